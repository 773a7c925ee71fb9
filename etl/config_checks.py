"""Cross-field checks of a loaded Config: each failure is one ConfigError naming the key and the fix."""

from __future__ import annotations

import os

from etl.config import FORMATS, SOURCE_RAW, SOURCES, Config, ConfigError, is_s3


def validate(cfg: Config, check_paths: bool = True) -> Config:
    """Cross-field checks; raises ConfigError naming the key and the fix."""
    seen = set()
    for fam in cfg.families:
        key = f"families.{fam.name}"
        if fam.name in seen:
            raise ConfigError(f"{key}: declared twice; keep one entry")
        seen.add(fam.name)
        if fam.source not in SOURCES:
            raise ConfigError(f"{key}.source: {fam.source!r} is not one of {', '.join(SOURCES)}")
        if fam.source == SOURCE_RAW:
            if fam.format not in FORMATS:
                raise ConfigError(f"{key}.format: unknown format {fam.format!r}; use one of {', '.join(FORMATS)}")
            if not fam.path:
                raise ConfigError(f"{key}.path: a raw family needs a path pattern such as '{fam.name}/**'")
        if fam.min_records < 0:
            raise ConfigError(f"{key}.min_records: must be >= 0")
    ratios = cfg.splits.ratios
    if set(ratios) != {"train", "val", "test"} or abs(sum(float(v) for v in ratios.values()) - 1.0) > 1e-6:
        raise ConfigError("splits.ratios: need train, val and test summing to 1.0, e.g. {train: 0.9, val: 0.05, test: 0.05}")
    if cfg.upload and not is_s3(cfg.release_uri):
        raise ConfigError("release_uri: upload is true but release_uri is not s3://bucket/prefix; set it or --set upload=false")
    if cfg.upload_settings.verify_read not in ("auto", "always", "never"):
        raise ConfigError("upload_settings.verify_read: use auto, always or never")
    if cfg.upload_settings.max_attempts < 1:
        raise ConfigError("upload_settings.max_attempts: must be >= 1 (total attempts per request)")
    if cfg.export.compression not in ("none", "gzip"):
        raise ConfigError("export.compression: use none or gzip")
    if cfg.dedup.shingle_unit not in ("char", "word"):
        raise ConfigError(f"dedup.shingle_unit: {cfg.dedup.shingle_unit!r}; use char or word")
    if cfg.dedup.embeddings.backend not in ("torch", "onnx"):
        raise ConfigError("dedup.embeddings.backend: use torch or onnx")
    if cfg.dedup.embeddings.precision not in ("auto", "fp32", "bf16", "fp16", "int8"):
        raise ConfigError("dedup.embeddings.precision: use auto, fp32, bf16, fp16 or int8")
    if cfg.dedup.embeddings.batch_size < 0:
        raise ConfigError("dedup.embeddings.batch_size: must be >= 0 (0 picks 64 on CPU, 256 on a GPU)")
    if cfg.dedup.embeddings.driver_max_texts < 0:
        raise ConfigError("dedup.embeddings.driver_max_texts: must be >= 0 (0: every missing text in Spark tasks)")
    if not 0 < cfg.dedup.jaccard_threshold < 1:
        raise ConfigError("dedup.jaccard_threshold: must be between 0 and 1")
    if check_paths and cfg.raw_root and not is_s3(cfg.raw_root) and not os.path.isdir(cfg.raw_root):
        raise ConfigError(f"raw_root: {cfg.raw_root} does not exist; point it at the raw data folder or s3://bucket/prefix")
    return cfg
