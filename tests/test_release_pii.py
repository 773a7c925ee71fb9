"""No PII value planted in the sample raw tree survives into any exported shard (checked by string, not detector)."""

from __future__ import annotations

import gzip

from lake_fixture import sample_lake  # noqa: F401 - shared session fixture


def test_no_planted_pii_value_reaches_any_exported_text(sample_lake):  # noqa: F811
    # a signature keeps its credentials by design ("[NAME], PhD, LMFT"): its name is what must go
    planted = {p["value"].split(",")[0].removeprefix("Dr. ") if p["kind"] == "signature" else p["value"]
               for p in sample_lake.truth["pii"]}
    assert len(planted) >= 5
    shards = [p for p in sample_lake.release.rglob("*.jsonl*") if p.is_file()]
    assert shards, "the sample release has no shards"
    text = "".join((gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()).decode("utf-8")
                   for p in shards).lower()
    survivors = sorted(v for v in planted if v.lower() in text)
    assert survivors == [], f"planted PII found in the release: {survivors}"
