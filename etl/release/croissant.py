"""croissant.json: a Croissant 1.0 (JSON-LD) description of a release, generated from its manifest only.

Checked with mlcroissant 1.1 (`mlcroissant validate --jsonld croissant.json` passes with only the
"recommended: citeAs, license" warnings, and `Dataset(...).records()` reads all three record sets).

Every shard is a FileObject (relative contentUrl, sha256, size); each phase is a FileSet over its shard glob with
one RecordSet whose fields come from the JSON lines (split and stage from the file path).
"""

from __future__ import annotations

from etl.release.shards import COMPRESSION_GZIP, EXTENSIONS

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
JSONL = "application/jsonlines"
GZIP = "application/gzip"
# Per phase: record set name, description, and the fields read from each JSON line.
RECORD_SETS = {
    "A": ("pretraining_text", "Phase A: conversations rendered as plain text for continued pretraining.",
          [("text", "text", None), ("conversation_id", "metadata", "conversation_id"),
           ("family", "metadata", "family"), ("content_hash", "metadata", "content_hash")]),
    "B": ("sft_messages", "Phase B: ChatML conversations for supervised fine-tuning, one stage per folder.",
          [("messages", "messages", None), ("conversation_id", "metadata", "conversation_id"),
           ("family", "metadata", "family"), ("content_hash", "metadata", "content_hash")]),
    "C": ("preference_pairs", "Phase C: TRL conversational preference pairs (prompt, chosen, rejected).",
          [("prompt", "prompt", None), ("chosen", "chosen", None), ("rejected", "rejected", None),
           ("pair_id", "metadata", "pair_id"), ("strategy", "metadata", "strategy")]),
}
MESSAGE_LISTS = ("messages", "prompt", "chosen", "rejected")


def _file_object(shard: dict, compression: str) -> dict:
    return {
        "@type": "cr:FileObject",
        "@id": shard["path"],
        "name": shard["path"],
        "description": f"phase {shard['phase']}, stage {shard['stage']}, split {shard['split']}: "
                       f"{shard['records']} records",
        "contentUrl": shard["path"],
        "encodingFormat": GZIP if compression == COMPRESSION_GZIP else JSONL,
        "contentSize": f"{shard['bytes']} B",
        "sha256": shard["sha256"],
    }


def _source(file_set: str, column: str, json_path: str | None = None) -> dict:
    src = {"fileSet": {"@id": file_set}, "extract": {"column": column}}
    if json_path:
        src["transform"] = {"jsonPath": json_path}
    return src


def _path_field(rs: str, file_set: str, name: str, phase: str, group: str) -> dict:
    """A field read from the shard path (`<phase>/<stage>/<split>-NNNNN-of-MMMMM...`)."""
    regex = f"^{phase}/([^/]+)/[^/]+$" if group == "stage" else f"^{phase}/[^/]+/([a-z]+)-[0-9]+-of-[0-9]+\\..+$"
    return {"@type": "cr:Field", "@id": f"{rs}/{name}", "name": name, "dataType": "sc:Text",
            "source": {"fileSet": {"@id": file_set}, "extract": {"fileProperty": "fullpath"},
                       "transform": {"regex": regex}}}


def _field(rs: str, file_set: str, name: str, column: str, json_path: str | None) -> dict:
    field = {"@type": "cr:Field", "@id": f"{rs}/{name}", "name": name}
    if name in MESSAGE_LISTS:
        field["repeated"] = True
        field["subField"] = [
            {"@type": "cr:Field", "@id": f"{rs}/{name}/{sub}", "name": sub, "dataType": "sc:Text",
             "source": _source(file_set, column, sub)} for sub in ("role", "content")]
    else:
        field["dataType"] = "sc:Text"
        field["source"] = _source(file_set, column, json_path)
    return field


def _record_set(phase: str, file_set: str) -> dict:
    rs, description, fields = RECORD_SETS[phase]
    return {
        "@type": "cr:RecordSet", "@id": rs, "name": rs, "description": description,
        "field": [_path_field(rs, file_set, "stage", phase, "stage"),
                  _path_field(rs, file_set, "split", phase, "split")]
                 + [_field(rs, file_set, name, column, path) for name, column, path in fields],
    }


def build_croissant(manifest: dict) -> dict:
    """Croissant JSON-LD for the release the manifest describes (relative URLs only)."""
    compression = manifest.get("export", {}).get("compression", "none")
    ext = EXTENSIONS.get(compression, ".jsonl")
    phases = sorted({s["phase"] for s in manifest["shards"]})
    distribution = [_file_object(s, compression) for s in manifest["shards"]]
    record_sets = []
    for phase in phases:
        file_set = f"phase-{phase}-shards"
        distribution.append({"@type": "cr:FileSet", "@id": file_set, "name": file_set,
                             "description": f"all phase {phase} shards", "encodingFormat": JSONL,
                             "includes": f"{phase}/*/*{ext}"})
        if phase in RECORD_SETS:
            record_sets.append(_record_set(phase, file_set))
    counts = manifest.get("counts", {})
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": f"therapy-chatml-{manifest['release_id']}",
        "description": ("Emotional-support / therapy assistant training data in three phases: A pretraining text, "
                        "B ordered SFT stages (ChatML messages), C preference pairs (TRL conversational format). "
                        f"{counts.get('records', 0)} records; provenance and Delta table versions in manifest.json."),
        "conformsTo": CONFORMS_TO,
        "version": "1.0.0",
        "identifier": manifest["release_id"],
        "datePublished": manifest.get("created_at"),
        "distribution": distribution,
        "recordSet": record_sets,
    }
