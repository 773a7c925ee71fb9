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
EXIT_CONFIG, EXIT_STORAGE, EXIT_GATE, EXIT_FAILED = 2, 3, 4, 1


class GateFailure(RuntimeError):
    """A release gate failed; the release must not be uploaded."""


def available_stages() -> list[str]:
    """Stages whose module exists in this build, in pipeline order."""
    return [name for name, module in STAGES.items() if importlib.util.find_spec(module) is not None]


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("py4j", "botocore", "boto3", "urllib3", "s3transfer", "sentence_transformers", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(spark, cfg: Config, name: str, run_id: str) -> dict:
    """Run one stage, log its one-line summary and return its counts."""
    module = importlib.import_module(STAGES[name])
    start = time.monotonic()
    counts = module.run(spark, cfg, run_id) or {}
    elapsed = time.monotonic() - start
    flat = {k: v for k, v in counts.items() if isinstance(v, (int, float, str, bool))}
    log.info("stage %s done in %.1fs: %s", name, elapsed, json.dumps(flat, default=str))
    return {**counts, "seconds": round(elapsed, 2)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etl", description=__doc__)
    parser.add_argument("command", help=f"one of: run, demo, sample, {', '.join(STAGES)}")
    parser.add_argument("--conf", default=None, help="YAML config file (overrides of the defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set dedup.num_perm=128 (repeatable)")
    parser.add_argument("--run-id", default=None, help="run id recorded in Delta userMetadata (default: new)")
    parser.add_argument("--from-stage", default=None, help="with run: start at this stage")
    parser.add_argument("--out", default=None, help="with sample: folder to write the sample raw tree to")
    parser.add_argument("--seed", type=int, default=42, help="with sample: random seed")
    parser.add_argument("--scale", type=int, default=1, help="with sample: size multiplier")
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
    from etl.io.local_s3 import local_s3

    cfg = load_config(args.conf, args.overrides, check_paths=False)
    args.out = cfg.raw_root
    _write_sample(args)
    with local_s3((cfg.release_uri,)) as endpoint:
        args.overrides = [*args.overrides, f"s3_endpoint_url={endpoint}", "upload=true"]
        args.command = "run"
        return execute(args)


def execute(args) -> int:
    if args.command == "sample":
        return _write_sample(args)
    if args.command == "demo":
        return _demo(args)
    stages = available_stages()
    if args.command == "run":
        todo = stages[stages.index(args.from_stage):] if args.from_stage else stages
    elif args.command in STAGES:
        if args.command not in stages:
            raise ConfigError(f"stage {args.command}: not available in this build")
        todo = [args.command]
    else:
        raise ConfigError(f"command {args.command!r}: unknown; use run, demo, sample or one of {', '.join(STAGES)}")
    cfg = load_config(args.conf, args.overrides)
    run_id = args.run_id or new_run_id()
    log.info("run %s: stages %s; config %s", run_id, ", ".join(todo), json.dumps(to_dict(cfg), default=str))
    from etl.io.delta import register_all
    from etl.spark import get_spark

    spark = get_spark()
    register_all(spark, cfg)
    for name in todo:
        run_stage(spark, cfg, name, run_id)
        if name == "verify" and not cfg.upload and "upload" in todo:
            log.info("upload=false: stopping after verify")
            break
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from etl.io.objects import StorageError

    try:
        return execute(args)
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
            traceback.print_exc()
        return EXIT_FAILED
