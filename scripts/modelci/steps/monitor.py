"""The monitor step: compare production's live inputs with the training data; tell people on drift.

Reads production's /metrics (per-feature input histograms and category counts, app/metrics.py) and
/lineage, and the served model's training statistics (`feature_stats`) from a model directory, a run
record, or the champion image. The statistics must belong to the model production serves (sha256).
Compares per feature (modelci.monitor) and writes drift.json and drift.md. Then, as the config's
`monitor.on_drift` asks (default `[issue]`; docs/monitoring.md): `issue` opens or updates one GitLab
issue per model and environment on drift and closes it on a clean check (modelci.drift_issue);
`retrain` starts a retraining pipeline on the default branch through the API, without variables.
`trigger=False` (--no-trigger) makes the check report-only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import artifact, champion, drift_issue, gitlab_api, log
from .. import monitor as mon
from .. import report as report_mod
from ..config import load_config
from ..errors import ModelCIError
from ..oci import ImageRepo
from ..settings.monitor import MonitorSettings
from . import Result

METHODS = sorted(mon.DEFAULT_THRESHOLDS)  # drift statistics: psi, ks


def _policy(s: MonitorSettings) -> tuple[str, float, list[str]]:
    section: dict[str, Any] = {}
    path = s.config
    if path or Path("model/modelci.yml").exists():
        section = load_config(path or "model/modelci.yml").get("monitor") or {}
    method = s.method or section.get("method") or "psi"
    threshold = s.threshold if s.threshold is not None else section.get("drift_threshold")
    if threshold is None:
        threshold = mon.DEFAULT_THRESHOLDS[method]
    if threshold < 0:
        raise ModelCIError(f"--threshold {threshold}: must be 0 or more")
    return method, float(threshold), list(section.get("on_drift") or ["issue"])


def _training_stats(s: MonitorSettings, lineage: dict[str, Any] | None) -> tuple[dict[str, Any], str, str | None]:
    if s.run_record:
        rr = artifact.read_json(s.run_record, "run record (run.json)")
        stats = rr.get("feature_stats") if isinstance(rr, dict) else None
        sha = ((rr.get("model") or {}).get("sha256")) if isinstance(rr, dict) else None
        source = f"run record {s.run_record}"
        where = f"{s.run_record}: feature_stats"
    else:
        model_dir = s.model
        if not model_dir:
            if not s.image:
                raise ModelCIError("no training statistics: pass --model DIR or --run-record FILE, or set "
                                   "MODELCI_IMAGE_REPO so the champion's model.json can be fetched")
            found = champion.fetch(s.production_url, ImageRepo.parse(s.image), Path(s.out) / "model")
            if not found:
                raise ModelCIError(f"--production-url {s.production_url}: no champion found (nothing at "
                                   f"/lineage and no version in {s.image}); deploy a model first")
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


def run(s: MonitorSettings) -> Result:
    if not s.production_url:
        raise ModelCIError("no production URL: pass --production-url or set MODELCI_PRODUCTION_URL "
                           "(the modelci serving app's base URL)")
    if s.min_rows < 0:
        raise ModelCIError("--min-rows: must be 0 or more")
    method, threshold, on_drift = _policy(s)
    out = Path(s.out)
    with log.section("modelci_monitor", "drift check"):
        text, lineage = mon.scrape(s.production_url)
        live = mon.parse_metrics(text)
        stats, source, sha = _training_stats(s, lineage)
        served = (live.get("model") or {}).get("sha256")
        if served and sha and served != sha:
            raise ModelCIError(f"{source}: statistics of model sha256 {sha[:12]}… but /metrics reports "
                               f"{served[:12]}…; pass the statistics of the deployed model")
        features = mon.analyse(live, stats, method, threshold, s.min_rows)
        report = mon.build_report(production_url=s.production_url, lineage=lineage, live=live,
                                  stats_source=source, stats_sha256=sha, method=method, threshold=threshold,
                                  min_rows=s.min_rows, features=features)
        for f in features:
            stat = "-" if f["statistic"] is None else f"{f['statistic']:.4f}"
            log.info(f"monitor: {f['feature']:<24} {f['kind']:<11} {method} {stat:>8}  {f['status']}")
        report["on_drift"] = on_drift if s.trigger else []
        report["commit"] = (lineage or {}).get("commit")
        _write(out, report)
        if report["drift"]:
            log.warn(f"monitor: drift in {', '.join(report['drifted_features'])} (threshold {threshold})")
        elif report["status"] == "ok":
            log.info("monitor: ok: no feature beyond the threshold")
        if not s.trigger:
            log.info("monitor: --no-trigger: report only (no drift issue, no retraining pipeline)")
        else:
            _act(s, report, out)
    return Result(report)


def _act(s: MonitorSettings, report: dict[str, Any], out: Path) -> None:
    """What the config's monitor.on_drift asks for: the drift issue, the retraining pipeline."""
    wants_issue, wants_retrain = "issue" in report["on_drift"], "retrain" in report["on_drift"]
    if report["status"] == "insufficient-data" or not (wants_issue or (wants_retrain and report["drift"])):
        return
    client = gitlab_api.from_env(scope=gitlab_api.SCOPE_API)
    if report["drift"] and wants_retrain:
        report["trigger"] = mon.trigger_retrain(client, s.ref)
        report["status"] = "triggered"
    elif report["drift"]:
        log.info("monitor: monitor.on_drift does not list retrain: no retraining pipeline started")
    if wants_issue:
        body = mon.markdown(report)
        links: dict[str, str] = {}
        if report["drift"]:
            plot = drift_issue.plot_png(report, out / "drift.png")
            if plot:
                body += "\n" + report_mod.upload_image(client, plot) + "\n"
            links = drift_issue.links(client, report, s.environment)
        report["issue"] = drift_issue.sync(client, report, environment=s.environment, links=links, body=body)
    _write(out, report)
