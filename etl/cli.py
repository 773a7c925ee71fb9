"""`python -m etl <stage|run> --conf FILE [--set key=value ...]`: the one entry point (CLI, spark-submit, wheel)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
import time
import traceback
import uuid
from datetime import datetime, timezone

from etl.config import Config, ConfigError, load_config, to_dict
from etl.testing.crash import crash_point

log = logging.getLogger("etl")

# Pipeline order; each module has `run(spark, cfg, run_id) -> dict of counts`.
STAGES = {
    "inventory": "etl.stages.inventory",
    "ingest": "etl.stages.ingest",
    "sessions": "etl.stages.sessions",
    "generators": "etl.stages.generators",
    "dedup": "etl.stages.dedup",
    "splits": "etl.stages.splits",
    "preference_pairs": "etl.stages.preference_pairs",
    "curriculum": "etl.stages.curriculum",
    "export": "etl.stages.export",
    "verify": "etl.stages.verify",
    "report": "etl.stages.report",
    "upload": "etl.stages.upload",
}
EXIT_CONFIG, EXIT_STORAGE, EXIT_GATE, EXIT_FAILED, EXIT_LOCKED = 2, 3, 4, 1, 5


class GateFailure(RuntimeError):
    """A release gate failed; the release must not be uploaded."""


def available_stages() -> list[str]:
    """Stages whose module exists in this build, in pipeline order."""
    return [name for name, module in STAGES.items() if importlib.util.find_spec(module) is not None]


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


class RedactSecrets(logging.Filter):
    """Masks credentials (AWS key ids, secret-like values, URL userinfo) in every record a handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        from etl.io.objects import redact_secrets

        message = record.getMessage()
        clean = redact_secrets(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        return True


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
    for noisy in ("py4j", "botocore", "boto3", "urllib3", "s3transfer", "sentence_transformers", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(spark, cfg: Config, name: str, run_id: str) -> dict:
    """Run one stage, log its one-line summary and return its counts."""
    from etl import progress

    module = importlib.import_module(STAGES[name])
    crash_point(name, "start")  # inert unless ETL_TEST_KILL_AT is set (crash-restart tests)
    start = time.monotonic()
    with progress.stage_progress(spark, name):
        counts = module.run(spark, cfg, run_id) or {}
    elapsed = time.monotonic() - start
    flat = {k: v for k, v in counts.items() if isinstance(v, (int, float, str, bool))}
    log.info("stage %s done in %.1fs: %s", name, elapsed, json.dumps(flat, default=str))
    crash_point(name, "end")
    return {**counts, "seconds": round(elapsed, 2)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etl", description=__doc__)
    parser.add_argument("command", help=f"one of: run, demo, sample, sql, bench, {', '.join(STAGES)}")
    parser.add_argument("--conf", default=None, help="YAML config file (overrides of the defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set dedup.num_perm=128 (repeatable)")
    parser.add_argument("--run-id", default=None, help="run id recorded in Delta userMetadata (default: new)")
    parser.add_argument("--from-stage", default=None, help="with run: start at this stage")
    parser.add_argument("--to-stage", default=None, help="with run: stop after this stage")
    parser.add_argument("--wait-lock", type=float, default=None, metavar="SECONDS",
                        help="wait this long for another run's lake lock (default: conf lock_timeout)")
    parser.add_argument("--local-s3", action="store_true",
                        help="with run: upload the release to a loopback S3 server started for this run (no cloud account)")
    parser.add_argument("--out", default=None, help="with sample: folder to write the sample raw tree to")
    parser.add_argument("--seed", type=int, default=42, help="with sample: random seed")
    parser.add_argument("--scale", type=int, default=1, help="with sample: size multiplier")
    parser.add_argument("-e", "--execute", dest="sql", action="append", default=[], metavar="SQL",
                        help="with sql: statement to run against the lake catalog (repeatable; else read stdin)")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging and full tracebacks")
    return parser


def _write_sample(args) -> int:
    from etl.sample_data import write_sample

    out = args.out or "sample_raw"
    truth = write_sample(out, seed=args.seed, scale=args.scale)
    log.info("sample raw tree written to %s (%s)", out, json.dumps({k: len(v) if isinstance(v, list) else v
                                                                   for k, v in truth.items()}, default=str)[:500])
    return 0


def _demo(args) -> int:
    """Sample tree + whole pipeline + upload to a loopback S3 server started and stopped here."""
    cfg = load_config(args.conf, args.overrides, check_paths=False)
    args.out = cfg.raw_root
    _write_sample(args)
    args.command, args.local_s3 = "run", True
    return execute(args)


def _with_local_s3(args) -> int:
    """`run --local-s3`: the same run, uploading to a moto S3 server on loopback that lives as long as the run."""
    from etl.io.local_s3 import local_s3

    cfg = load_config(args.conf, args.overrides, check_paths=False)
    if not cfg.release_uri.startswith("s3://"):
        raise ConfigError(f"--local-s3 needs release_uri=s3://bucket/prefix, got {cfg.release_uri!r}")
    with local_s3((cfg.release_uri,)) as endpoint:
        args.overrides = [*args.overrides, f"s3_endpoint_url={endpoint}", "upload=true"]
        args.local_s3 = False
        return execute(args)


def execute(args) -> int:
    if args.command == "sample":
        return _write_sample(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "run" and getattr(args, "local_s3", False):
        return _with_local_s3(args)
    if args.command == "sql":
        from etl.catalog import sql_command

        return sql_command(args.conf, args.overrides, args.sql)
    stages = available_stages()
    if args.command == "run":
        todo = stages[stages.index(args.from_stage):] if args.from_stage else stages
        if args.to_stage:
            if args.to_stage not in todo:
                raise ConfigError(f"--to-stage {args.to_stage}: not a stage of this run; use one of {', '.join(todo)}")
            todo = todo[:todo.index(args.to_stage) + 1]
    elif args.command in STAGES:
        if args.command not in stages:
            raise ConfigError(f"stage {args.command}: not available in this build")
        todo = [args.command]
    else:
        raise ConfigError(f"command {args.command!r}: unknown; use run, demo, sample, sql or one of {', '.join(STAGES)}")
    cfg = load_config(args.conf, args.overrides)
    run_id = args.run_id or new_run_id()
    log.info("run %s: stages %s; config %s", run_id, ", ".join(todo), json.dumps(to_dict(cfg), default=str))
    from etl.io.lock import LakeLock

    wait = args.wait_lock if getattr(args, "wait_lock", None) is not None else cfg.lock_timeout
    with LakeLock(cfg.lake_root, run_id, wait, cfg.lock_stale_seconds, endpoint_url=cfg.s3_endpoint_url):
        return _run_stages(cfg, todo, run_id)


def _run_stages(cfg: Config, todo: list[str], run_id: str) -> int:
    """The stages in order, on one Spark session (the caller holds the lake lock)."""
    from etl.io.delta import register_all
    from etl.spark import get_spark

    spark = get_spark()
    register_all(spark, cfg)
    for name in todo:  # upload runs as a no-op when upload=false, so the report after verify always runs
        try:
            run_stage(spark, cfg, name, run_id)
        except GateFailure:
            if name == "verify" and "report" in todo:
                _report_blocked_release(spark, cfg, run_id)
            raise
    return 0


def _report_blocked_release(spark, cfg: Config, run_id: str) -> None:
    """Write the release report even when verify failed: it shows the failed gates beside the data."""
    try:
        run_stage(spark, cfg, "report", run_id)
    except Exception as exc:  # noqa: BLE001 - the gate failure is the error to report, not this
        log.warning("report of the blocked release failed: %s", exc)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the scale benchmark has its own options: etl/bench/run.py
        from etl.bench.run import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from etl.io.lock import LakeLocked
    from etl.io.objects import StorageError, redact_secrets

    try:
        return execute(args)
    except LakeLocked as exc:
        log.error("lake locked: %s", exc)
        return EXIT_LOCKED
    except ConfigError as exc:
        log.error("config error: %s", exc)
        return EXIT_CONFIG
    except StorageError as exc:
        log.error("storage error: %s", exc)
        return EXIT_STORAGE
    except GateFailure as exc:
        log.error("release blocked: %s", exc)
        return EXIT_GATE
    except Exception as exc:  # noqa: BLE001 - one clear line for the user, the traceback only with --verbose
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
        log.error("failed: %s: %s (re-run with --verbose for the traceback)", type(exc).__name__, first)
        if args.verbose:
            sys.stderr.write(redact_secrets(traceback.format_exc()))
        return EXIT_FAILED
