"""Which device and batch the driver sizes embedding tasks for, on a local master, a cluster and Spark Connect."""

from __future__ import annotations

import pytest

from etl.config import ConfigError, EmbeddingConf


def test_the_driver_sizes_embedding_tasks_for_the_executors_device(monkeypatch):
    """On a cluster the driver may have no GPU while the executors do: cuda is taken at its word there and auto
    follows Spark's GPU scheduling; with a local master the driver's own torch answers (and refuses cuda)."""
    import torch

    from etl.dedup import udfs

    class Stub:
        def __init__(self, master, settings):
            self.sparkContext = type("Ctx", (), {"master": master})()
            self.conf = type("Conf", (), {"get": lambda _self, key, default=None: settings.get(key, default)})()

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a driver without a GPU
    cluster = Stub("yarn", {})
    gpu_cluster = Stub("spark://head:7077", {"spark.executor.resource.gpu.amount": "1"})
    assert udfs.executor_device(cluster, "cuda") == "cuda"
    assert udfs.executor_device(gpu_cluster, "auto") == "cuda"
    assert udfs.executor_device(cluster, "auto") == "cpu" and udfs.executor_device(gpu_cluster, "cpu") == "cpu"
    assert udfs.task_batch_size(cluster, EmbeddingConf(device="cuda")) == 256
    assert udfs.task_batch_size(cluster, EmbeddingConf(device="cuda", batch_size=48)) == 48
    assert udfs.task_batch_size(Stub("yarn", {"spark.executor.resource.gpu.amount": "x"}), EmbeddingConf()) == 64
    with pytest.raises(ConfigError, match=r"^dedup\.embeddings\.device: unknown device 'tpu'"):
        udfs.executor_device(cluster, "tpu")
    assert udfs.executor_device(Stub("yarn", {"spark.executor.resource.gpu.amount": "0"}), "auto") == "cpu"

    class ConnectStub(Stub):  # Spark Connect: no SparkContext in the client process
        @property
        def sparkContext(self):
            raise RuntimeError("[JVM_ATTRIBUTE_NOT_SUPPORTED] sparkContext")

        @sparkContext.setter
        def sparkContext(self, _value):
            pass

    connect = ConnectStub("", {"spark.sql.shuffle.partitions": "48", "spark.task.cpus": "4"})
    assert not udfs.runs_locally(connect) and udfs.executor_device(connect, "cuda") == "cuda"
    assert udfs.parallelism(connect) == 48 and udfs.torch_threads_per_task(connect, 3) == 4
    both = ConnectStub("", {"spark.default.parallelism": "64", "spark.sql.shuffle.partitions": "48"})
    assert udfs.parallelism(both) == 64
    auto = ConnectStub("", {"spark.sql.shuffle.partitions": "auto", "spark.task.cpus": "x"})  # Databricks' "auto"
    assert udfs.parallelism(auto) == udfs.CONNECT_PARALLELISM and udfs.torch_threads_per_task(auto, 3) == 1
    local = Stub("local[2]", {})
    assert udfs.executor_device(local, "auto") == "cpu"
    with pytest.raises(ConfigError, match=r"^dedup\.embeddings\.device: cuda requested but torch sees no GPU"):
        udfs.executor_device(local, "cuda")
