"""`modelci monitor`: compare production's live inputs with the training data; retrain on drift.

  modelci monitor --production-url URL [--model DIR | --run-record run.json] [--out out/monitor]
                  [--config model/modelci.yml] [--method psi|ks] [--threshold X] [--no-trigger]

Reads production's /metrics (per-feature input histograms and category counts, app/metrics.py) and
/lineage, and the served model's training statistics (`feature_stats`): from --model (a model
directory) or --run-record, else from the champion image (the version production serves, pulled
from MODELCI_IMAGE_REPO). The statistics must belong to the model production serves (sha256).
Compares per feature (PSI by default; see modelci.monitor), writes drift.json and drift.md to --out
and, when a feature drifts beyond `monitor.drift_threshold` of the config, starts a retraining
pipeline on the default branch through the API (variables FORCE_RETRAIN=true and
MODELCI_DRIFT_RETRAIN=true; needs MODELCI_GITLAB_TOKEN with the `api` scope and Developer role).

Exit status: 0 and "status": "ok" without drift; 0 and "status": "triggered" when drift started a
retraining pipeline ("drift" with --no-trigger; "insufficient-data" when production saw too few
values to judge); 1 on any error (production unreachable, statistics of another model, API failure).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .. import artifact, gitlab_api, log
from .. import monitor as mon
from ..errors import ModelCIError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("monitor", help="compare production's inputs with the training data; "
                                              "trigger a retrain on drift",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--production-url", default=log.env("MODELCI_PRODUCTION_URL"),
                   help="production base URL serving /metrics and /lineage [MODELCI_PRODUCTION_URL]")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=log.env("MODELCI_MONITOR_MODEL"), metavar="DIR",
                     help="model directory whose model.json holds the training statistics")
    src.add_argument("--run-record", default=log.env("MODELCI_MONITOR_RUN_RECORD"), metavar="FILE",
                     help="run.json of the training run")
    p.add_argument("--image", default=log.env("MODELCI_IMAGE_REPO"),
                   help="serving image repository, to fetch the champion's model.json when neither --model "
                        "nor --run-record is given [MODELCI_IMAGE_REPO]")
    p.add_argument("--config", default=None,
                   help="model config with the monitor: section [MODELCI_CONFIG, else model/modelci.yml if "
                        "present]")
    p.add_argument("--method", choices=sorted(mon.DEFAULT_THRESHOLDS), default=None,
                   help="psi or ks [config monitor.method, else psi]")
    p.add_argument("--threshold", type=float, default=None,
                   help="drift threshold [config monitor.drift_threshold, else 0.2 for psi, 0.1 for ks]")
    p.add_argument("--min-rows", type=int, default=int(log.env("MODELCI_MONITOR_MIN_ROWS", "100") or 100),
                   help="live values a feature needs before it can drift [MODELCI_MONITOR_MIN_ROWS, 100]")
    p.add_argument("--out", default=log.env("MODELCI_MONITOR_OUT", "out/monitor"),
                   help="report directory (drift.json, drift.md) [out/monitor]")
    p.add_argument("--no-trigger", dest="trigger", action="store_false",
                   default=(log.env("MODELCI_MONITOR_TRIGGER", "true") or "true").lower() != "false",
                   help="report drift without starting a retraining pipeline [MODELCI_MONITOR_TRIGGER=false]")
    p.add_argument("--ref", default=log.env("CI_DEFAULT_BRANCH"),
                   help="branch of the retraining pipeline [CI_DEFAULT_BRANCH, else the project's default]")
    p.set_defaults(func=run)


def _policy(args: argparse.Namespace) -> tuple[str, float]:
    section: dict[str, Any] = {}
    path = args.config or log.env("MODELCI_CONFIG")
    if path or Path("model/modelci.yml").exists():
        from ..config import load_config

        section = load_config(path or "model/modelci.yml").get("monitor") or {}
    method = args.method or section.get("method") or "psi"
    threshold = args.threshold if args.threshold is not None else section.get("drift_threshold")
    if threshold is None:
        threshold = mon.DEFAULT_THRESHOLDS[method]
    if threshold < 0:
        raise ModelCIError(f"--threshold {threshold}: must be 0 or more")
    return method, float(threshold)


def _training_stats(args: argparse.Namespace, lineage: dict[str, Any] | None) -> tuple[dict[str, Any], str, str | None]:
    if args.run_record:
        rr = artifact.read_json(args.run_record, "run record (run.json)")
        stats = rr.get("feature_stats") if isinstance(rr, dict) else None
        sha = ((rr.get("model") or {}).get("sha256")) if isinstance(rr, dict) else None
        source = f"run record {args.run_record}"
        where = f"{args.run_record}: feature_stats"
    else:
        model_dir = args.model
        if not model_dir:
            if not args.image:
                raise ModelCIError("no training statistics: pass --model DIR or --run-record FILE, or set "
                                   "MODELCI_IMAGE_REPO so the champion's model.json can be fetched")
            from .. import champion
            from ..oci import ImageRepo

            found = champion.fetch(args.production_url, ImageRepo.parse(args.image), Path(args.out) / "model")
            if not found:
                raise ModelCIError(f"--production-url {args.production_url}: no champion found (nothing at "
                                   f"/lineage and no version in {args.image}); deploy a model first")
            model_dir = found["dir"]
        meta = artifact.read_meta(model_dir)
        stats, sha = meta.get("feature_stats"), meta.get("sha256")
        source = f"model {model_dir}"
        where = f"{Path(model_dir) / artifact.META_FILE}: feature_stats"
    if not isinstance(stats, dict) or not stats:
        raise ModelCIError(f"{where}: missing or empty; retrain with a modelci version that records "
                           f"per-feature statistics")
    served = (lineage or {}).get("sha256")
    if served and sha and served != sha:
        raise ModelCIError(f"{where}: statistics of model sha256 {sha[:12]}… but production serves "
                           f"{served[:12]}…; pass the --model/--run-record of the deployed model")
    return stats, source, sha


def _write(out: Path, report: dict[str, Any]) -> None:
    artifact.write_json_atomic(out / "drift.json", report)
    (out / "drift.md").write_text(mon.markdown(report))


def run(args: argparse.Namespace) -> int:
    if not args.production_url:
        raise ModelCIError("no production URL: pass --production-url or set MODELCI_PRODUCTION_URL "
                           "(the modelci serving app's base URL)")
    if args.min_rows < 0:
        raise ModelCIError("--min-rows: must be 0 or more")
    method, threshold = _policy(args)
    out = Path(args.out)
    with log.section("modelci_monitor", "drift check"):
        text, lineage = mon.scrape(args.production_url)
        live = mon.parse_metrics(text)
        stats, source, sha = _training_stats(args, lineage)
        served = (live.get("model") or {}).get("sha256")
        if served and sha and served != sha:
            raise ModelCIError(f"{source}: statistics of model sha256 {sha[:12]}… but /metrics reports "
                               f"{served[:12]}…; pass the statistics of the deployed model")
        features = mon.analyse(live, stats, method, threshold, args.min_rows)
        report = mon.build_report(production_url=args.production_url, lineage=lineage, live=live,
                                  stats_source=source, stats_sha256=sha, method=method, threshold=threshold,
                                  min_rows=args.min_rows, features=features)
        for f in features:
            stat = "-" if f["statistic"] is None else f"{f['statistic']:.4f}"
            log.info(f"monitor: {f['feature']:<24} {f['kind']:<11} {method} {stat:>8}  {f['status']}")
        _write(out, report)
        if report["drift"]:
            log.warn(f"monitor: drift in {', '.join(report['drifted_features'])} (threshold {threshold})")
            if args.trigger:
                client = gitlab_api.from_env(scope=gitlab_api.SCOPE_API)
                report["trigger"] = mon.trigger_retrain(client, args.ref)
                report["status"] = "triggered"
                _write(out, report)
            else:
                log.info("monitor: --no-trigger: no retraining pipeline started")
        else:
            log.info(f"monitor: {report['status']}: no feature beyond the threshold")
    print(json.dumps(report, indent=2, default=str))
    return 0
