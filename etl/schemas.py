"""Every table schema, declared once: used for reads, pandas UDF output, checks, tests and catalog comments."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# Table names (also the folder under lake_root and the catalog table name).
INVENTORY = "inventory"
CONVERSATIONS = "conversations"
QUARANTINE = "quarantine"
PII_FINDINGS = "pii_findings"
INGEST_OBJECTS = "ingest_objects"
EMBEDDINGS = "embeddings"
TEXT_FEATURES = "text_features"
EMBEDDING_LSH = "embedding_lsh"
TURN_KEYS = "turn_keys"
DUP_EDGES = "dup_edges"
DUP_CLUSTERS = "dup_clusters"
SPLITS = "splits"
PREFERENCE_PAIRS = "preference_pairs"
CURRICULUM = "curriculum"
GATE_RESULTS = "gate_results"
PII_SCANS = "pii_scans"

ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT = "system", "user", "assistant"
ROLES = (ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT)


def _f(name: str, dtype, nullable: bool = True, comment: str = "") -> StructField:
    return StructField(name, dtype, nullable, {"comment": comment} if comment else {})


MESSAGE = StructType([_f("role", StringType(), False), _f("content", StringType(), False)])
MESSAGES = ArrayType(MESSAGE, False)

INVENTORY_SCHEMA = StructType([
    _f("key", StringType(), False, "object key relative to raw_root"),
    _f("uri", StringType(), False, "full object URI"),
    _f("size", LongType(), False, "bytes"),
    _f("etag", StringType(), True, "S3 ETag, or MD5 hex of a local file (equal for single-part uploads)"),
    _f("mtime", TimestampType(), True, "last modified"),
    _f("family", StringType(), True, "family the routing config maps the key to (null when unmapped)"),
    _f("format", StringType(), True, "reader format of the family"),
    _f("status", StringType(), False, "mapped | unmapped | ignored | empty | unreadable"),
    _f("detail", StringType(), True, "why the status, when not mapped"),
])

CONVERSATIONS_SCHEMA = StructType([
    _f("conversation_id", StringType(), False, "stable id: sha256(family, source key, locator)[:32]"),
    _f("family", StringType(), False, "family name from conf"),
    _f("source_uri", StringType(), False, "raw object key (relative to raw_root) or generator provenance"),
    _f("source_etag", StringType(), True, "etag of the raw object read"),
    _f("source_locator", StringType(), False, "line / row / array index inside the object"),
    _f("ingest_run_id", StringType(), False, "run id of the write that produced the row"),
    _f("messages", MESSAGES, False, "ChatML turns, PII-redacted"),
    _f("content_hash", StringType(), False, "sha256 of the canonical messages (README: content hash)"),
    _f("metadata", MapType(StringType(), StringType()), False, "source metadata, strings"),
    _f("topic", StringType(), True, "topic label where the source has one"),
    _f("turn_count", IntegerType(), False, "number of messages"),
    _f("char_count", IntegerType(), False, "characters over all message contents"),
    _f("quality_score", DoubleType(), True, "source-provided quality signal, else null"),
    _f("pii_redacted", BooleanType(), False, "true when the PII redactor ran over the messages"),
    _f("parent_id", StringType(), True, "conversation this row was derived from (windows, generators)"),
])

QUARANTINE_SCHEMA = StructType([
    _f("family", StringType(), True, "family of the object, null when unmapped"),
    _f("source_uri", StringType(), False, "raw object key"),
    _f("source_locator", StringType(), False, "line / row / array index, or 'object'"),
    _f("reason", StringType(), False, "reason class, e.g. malformed_json, no_assistant_turn"),
    _f("detail", StringType(), True, "human-readable detail"),
    _f("raw_text", StringType(), True, "the raw record (truncated to ingest.quarantine_raw_chars)"),
    _f("ingest_run_id", StringType(), False, "run id"),
])

PII_FINDINGS_SCHEMA = StructType([
    _f("family", StringType(), False, "family"),
    _f("pii_type", StringType(), False, "EMAIL, PHONE, NAME, ..."),
    _f("findings", LongType(), False, "occurrences redacted"),
    _f("conversations", LongType(), False, "conversations with at least one"),
])

EMBEDDINGS_SCHEMA = StructType([
    _f("text_hash", StringType(), False, "sha256 of the canonical text embedded"),
    _f("model", StringType(), False, "model name + max_seq_length"),
    _f("vector", ArrayType(FloatType(), False), False, "L2-normalised embedding"),
])

INGEST_OBJECTS_SCHEMA = StructType([
    _f("key", StringType(), False, "object key under raw_root (conversations.source_uri)"),
    _f("etag", StringType(), True, "version parsed (S3 ETag, MD5 of a local file); none: never reused"),
    _f("family", StringType(), False, "family the object was routed to"),
    _f("ingest_key", StringType(), False, "digest of the reader/PII settings and code that parsed it"),
    _f("records_read", LongType(), False, "records the reader found"),
    _f("conversations", LongType(), False, "rows written to conversations"),
    _f("quarantined", LongType(), False, "rows written to quarantine"),
    _f("pii_findings", MapType(StringType(), LongType()), False, "redacted occurrences per PII type"),
    _f("pii_conversations", MapType(StringType(), LongType()), False, "conversations with that PII type"),
    _f("ingest_run_id", StringType(), False, "run that parsed the object"),
])

TEXT_FEATURES_SCHEMA = StructType([
    _f("raw_key", StringType(), False, "sha256 of the raw text (the cache key)"),
    _f("params", StringType(), False, "shingling, MinHash, banding settings and code digest that produced the row"),
    _f("text_hash", StringType(), False, "sha256 of the canonical text"),
    _f("n_chars", IntegerType(), False, "characters of the normalised text"),
    _f("informative", BooleanType(), False, "long enough and not a stock phrase: may link rows"),
    _f("signature", ArrayType(LongType(), False), False, "MinHash signature"),
    _f("bands", ArrayType(LongType(), False), False, "LSH band keys"),
])

LSH_PAIR = StructType([_f("h2", StringType(), False), _f("jaccard", DoubleType(), False),
                       _f("cosine", DoubleType(), False)])
EMBEDDING_LSH_SCHEMA = StructType([
    _f("params", StringType(), False, "hyperplane, bucket, threshold, model and MinHash settings + code digest"),
    _f("field", StringType(), False, "prompt | answer"),
    _f("text_hash", StringType(), False, "sha256 of the canonical text"),
    _f("bands", ArrayType(LongType(), False), False, "hyperplane bucket key per table"),
    _f("pairs", ArrayType(LSH_PAIR, False), False, "embedding-LSH candidates with a larger hash, scored"),
])

TURN_KEY = StructType([_f("hash", StringType(), False, "sha256 of the canonical turn text"),
                       _f("chars", IntegerType(), False, "characters of the canonical text"),
                       _f("filler", BooleanType(), False, "only greeting/thanks/sign-off words (etl.leakage)")])
TURN_KEYS_SCHEMA = StructType([
    _f("digest", StringType(), False, "digest of the code that computed the keys (etl.turn_keys)"),
    _f("content_hash", StringType(), False, "conversations.content_hash the keys belong to"),
    _f("first_user", TURN_KEY, True, "first user turn (null: none)"),
    _f("answers", ArrayType(TURN_KEY, False), False, "distinct assistant turns"),
])

DUP_EDGES_SCHEMA = StructType([
    _f("conversation_id_a", StringType(), False, "smaller id of the pair"),
    _f("conversation_id_b", StringType(), False, "larger id of the pair"),
    _f("kind", StringType(), False, "duplicate | related"),
    _f("jaccard", DoubleType(), True, "MinHash-estimated Jaccard of the compared texts"),
    _f("cosine", DoubleType(), True, "cosine of the embeddings of the compared texts"),
    _f("source", StringType(), False, "exact | minhash | embedding: how the candidate was proposed"),
    _f("field", StringType(), False, "conversation | prompt | answer: what was compared"),
])

DUP_CLUSTERS_SCHEMA = StructType([
    _f("conversation_id", StringType(), False, "conversation"),
    _f("cluster_id", StringType(), False, "component of the duplicate relation (smallest content_hash)"),
    _f("is_canonical", BooleanType(), False, "the member kept at export"),
    _f("cluster_size", IntegerType(), False, "members"),
    _f("reason", StringType(), False, "singleton | exact | near | capped"),
])

SPLITS_SCHEMA = StructType([
    _f("conversation_id", StringType(), False, "conversation"),
    _f("family", StringType(), False, "family"),
    _f("split_group", StringType(), False, "component of duplicate + related relations"),
    _f("split", StringType(), False, "train | val | test | holdout"),
    _f("rule", StringType(), False, "balanced | hash | holdout_family | holdout_linked | previous_release | inherited"),
])

PREFERENCE_PAIRS_SCHEMA = StructType([
    _f("pair_id", StringType(), False, "stable id"),
    _f("prompt", MESSAGES, False, "conversation up to the compared assistant turn"),
    _f("chosen", MESSAGES, False, "one assistant message"),
    _f("rejected", MESSAGES, False, "one assistant message"),
    _f("strategy", StringType(), False, "ranked | native | hard_negative | degraded | safety"),
    _f("margin", DoubleType(), True, "chosen_score - rejected_score"),
    _f("chosen_score", DoubleType(), True, "score of chosen"),
    _f("rejected_score", DoubleType(), True, "score of rejected"),
    _f("source_conversation_ids", ArrayType(StringType(), False), False, "provenance"),
    _f("family", StringType(), False, "family of the prompt"),
    _f("split", StringType(), False, "split of the prompt"),
])

CURRICULUM_SCHEMA = StructType([
    _f("family", StringType(), False, "family"),
    _f("phase", StringType(), False, "A | B | C"),
    _f("stage", StringType(), False, "stage name within the phase"),
    _f("stage_order", IntegerType(), False, "order of the stage within its phase"),
    _f("weight", DoubleType(), False, "mixing weight of the family in the stage"),
    _f("depends_on", ArrayType(StringType(), False), False, "stages that must precede"),
])

PII_SPAN = StructType([_f("field", StringType(), False, "messages[i] | prompt[i] | ... | text | metadata.<key>"),
                       _f("pii_type", StringType(), False, "detector type (EMAIL, PHONE, ...)"),
                       _f("start", IntegerType(), False, "first character of the span"),
                       _f("end", IntegerType(), False, "character after the span")])
PII_SCANS_SCHEMA = StructType([
    _f("digest", StringType(), False, "digest of the PII detector code and verify.pii_metadata_fields"),
    _f("key", StringType(), False, "sha256 of the JSON of the exported fields the PII gate scans"),
    _f("spans", ArrayType(PII_SPAN, False), False, "PII the detector found in those fields (empty: none)"),
])

GATE_RESULTS_SCHEMA = StructType([
    _f("run_id", StringType(), False, "run id"),
    _f("release_id", StringType(), False, "release checked"),
    _f("gate", StringType(), False, "coverage | leakage | distribution | pii | provenance | hash | split | stats"),
    _f("passed", BooleanType(), False, "gate verdict"),
    _f("figures", StringType(), False, "JSON of the measured figures"),
    _f("examples", StringType(), False, "JSON list of offending examples"),
])

SCHEMAS = {
    INVENTORY: INVENTORY_SCHEMA,
    CONVERSATIONS: CONVERSATIONS_SCHEMA,
    QUARANTINE: QUARANTINE_SCHEMA,
    PII_FINDINGS: PII_FINDINGS_SCHEMA,
    INGEST_OBJECTS: INGEST_OBJECTS_SCHEMA,
    EMBEDDINGS: EMBEDDINGS_SCHEMA,
    TEXT_FEATURES: TEXT_FEATURES_SCHEMA,
    EMBEDDING_LSH: EMBEDDING_LSH_SCHEMA,
    TURN_KEYS: TURN_KEYS_SCHEMA,
    DUP_EDGES: DUP_EDGES_SCHEMA,
    DUP_CLUSTERS: DUP_CLUSTERS_SCHEMA,
    SPLITS: SPLITS_SCHEMA,
    PREFERENCE_PAIRS: PREFERENCE_PAIRS_SCHEMA,
    CURRICULUM: CURRICULUM_SCHEMA,
    GATE_RESULTS: GATE_RESULTS_SCHEMA,
    PII_SCANS: PII_SCANS_SCHEMA,
}
