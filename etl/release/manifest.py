"""manifest.json: what a release contains and exactly which Delta table versions produced it (plain Python).

Top-level keys (a contract with verify and upload): release_id, created_at, code_version, config_hash,
curriculum, shards, counts, tables, export. Every path in it is relative (shards to the release root, tables to
lake_root), so a manifest can travel with its release.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import etl

MANIFEST_NAME = "manifest.json"
CROISSANT_NAME = "croissant.json"
HISTORY_KEYS = ("version", "timestamp", "operation", "operationMetrics", "userMetadata")
_ABSOLUTE = re.compile(r"^(/|[A-Za-z]:[\\/]|file:)")


def code_version() -> str:
    """`<etl.__version__>+git.<commit12>[.dirty]`, or the bare version where no git checkout is available."""
    repo = Path(etl.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return etl.__version__
    if not commit:
        return etl.__version__
    return f"{etl.__version__}+git.{commit[:12]}{'.dirty' if dirty else ''}"


def derive_release_id(versions: dict[str, int], config_hash: str, curriculum_sha256: str,
                      shard_digests: dict[str, str] | None = None) -> str:
    """`rel-<16 hex>` from the pinned table versions, the config hash, the curriculum file digest and the shards'
    sha256 (path -> digest): the same content exported the same way keeps its id, other data never shares it
    (two fresh lakes both sit at version 0)."""
    blob = json.dumps({"tables": dict(sorted(versions.items())), "config_hash": config_hash,
                       "curriculum": curriculum_sha256, "shards": dict(sorted((shard_digests or {}).items()))},
                      sort_keys=True)
    return "rel-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def table_entry(name: str, version: int, history_rows: list[dict]) -> dict:
    """One input table: name, path relative to lake_root, pinned version, history rows up to that version."""
    rows = [{k: r.get(k) for k in HISTORY_KEYS} for r in history_rows if r["version"] <= version]
    return {"name": name, "path": name, "version": version, "history": rows}


def _nested_add(tree: dict, keys: tuple, n: int) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = tree.get(keys[-1], 0) + n


def _sorted_tree(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _sorted_tree(tree[k]) for k in sorted(tree)}
    return tree


def counts_summary(tally: Counter, excluded: dict[str, dict[str, int]]) -> dict:
    """Counts from the writer's tally of (phase, stage, split, family) plus the records left out and why."""
    by_family, by_stage, by_phase = {}, {}, Counter()
    for (phase, stage, split, family), n in tally.items():
        _nested_add(by_family, (family, split, phase), n)
        _nested_add(by_stage, (f"{phase}/{stage}", split), n)
        by_phase[phase] += n
    return {
        "records": sum(tally.values()),
        "by_phase": dict(sorted(by_phase.items())),
        "by_family_split_phase": _sorted_tree(by_family),
        "by_stage_split": _sorted_tree(by_stage),
        "excluded": _sorted_tree(excluded),
    }


def absolute_paths(obj: Any, where: str = "") -> list[str]:
    """Keys of string values that look like absolute local paths (a manifest must not carry any)."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in absolute_paths(v, f"{where}.{k}" if where else str(k))]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in absolute_paths(v, f"{where}[{i}]")]
    return [where] if isinstance(obj, str) and _ABSOLUTE.match(obj) else []


def build_manifest(*, release_id: str, created_at: str, config_hash: str, curriculum: dict, shards: list[dict],
                   counts: dict, tables: list[dict], export: dict) -> dict:
    """Assemble the manifest; raises if any value is an absolute local path."""
    manifest = {
        "release_id": release_id,
        "created_at": created_at,
        "code_version": code_version(),
        "config_hash": config_hash,
        "curriculum": curriculum,
        "shards": sorted(shards, key=lambda s: s["path"]),
        "counts": counts,
        "tables": tables,
        "export": export,
    }
    bad = absolute_paths(manifest)
    if bad:
        raise RuntimeError(f"export: manifest would carry absolute paths at {', '.join(bad[:5])}; paths must be relative")
    return manifest


def write_json(path: str | Path, obj: dict) -> None:
    """Pretty JSON, UTF-8, trailing newline; written via a temp file and renamed."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def read_manifest(release_dir: str | Path) -> dict:
    path = Path(release_dir) / MANIFEST_NAME
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no manifest; run export first") from None


def versions_from_manifest(manifest: dict) -> dict[str, int]:
    """The pinned table versions a manifest records, for re-exporting the same release."""
    return {t["name"]: int(t["version"]) for t in manifest["tables"]}
