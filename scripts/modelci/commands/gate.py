"""`modelci gate`: score candidate and champion on the same hold-out rows and apply the gate policy.

  modelci gate --config model/modelci.yml --candidate out/model [--champion out/champion] --out out/gate
  modelci gate check-verdict --verdict out/gate/verdict.json --model out/model

Writes verdict.json, junit.xml, metrics.txt (GitLab metrics report), summary.md and gate.png.
Exit 0 passed (or dry run), 2 rejected, 3 NO_CHANGE not promotable, 1 error.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import artifact, gate, log, settings
from ..errors import ModelCIError


def _env(name: str, default: Any = None) -> Any:
    # TEMPORARY (arch branch): log.env is gone; this file's owner moves it onto modelci.settings.
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("gate", help="promotion gate: candidate vs champion on the hold-out set",
                              description=__doc__.splitlines()[0])
    p.add_argument("--config", default=_env("MODELCI_CONFIG", "model/modelci.yml"),
                   help="model config (env MODELCI_CONFIG; default model/modelci.yml)")
    p.add_argument("--candidate", default=_env("MODELCI_CANDIDATE"),
                   help="candidate model directory (env MODELCI_CANDIDATE; default <MODELCI_OUT|out>/model)")
    p.add_argument("--champion", default=settings.get("MODELCI_CHAMPION"),
                   help="champion model directory; absent or empty = first model (env MODELCI_CHAMPION)")
    p.add_argument("--out", default=_env("MODELCI_GATE_OUT"),
                   help="output directory (env MODELCI_GATE_OUT; default <MODELCI_OUT|out>/gate)")
    p.add_argument("--dry-run", action="store_true", default=_env("MODELCI_GATE_DRY_RUN") == "true",
                   help="report without blocking (overrides gate.dry_run; env MODELCI_GATE_DRY_RUN=true)")
    p.add_argument("--report", action=argparse.BooleanOptionalAction,
                   default=_env("MODELCI_REPORT", "false") == "true",
                   help="after the verdict (whatever it is), post the evidence as the MR/commit note "
                        "like `modelci report` (env MODELCI_REPORT=true)")
    p.set_defaults(func=run)
    sub = p.add_subparsers(dest="gate_command", metavar="SUBCOMMAND", required=False,
                           parser_class=type(p))
    c = sub.add_parser("check-verdict", help="refuse a model without a passing, non-dry-run verdict")
    c.add_argument("--verdict", required=True, help="verdict.json written by `modelci gate`")
    c.add_argument("--model", required=True, help="model directory the verdict must be bound to")
    c.set_defaults(func=run_check_verdict)


def run_check_verdict(args: argparse.Namespace) -> int:
    verdict = gate.require_passing_verdict(args.verdict, args.model)
    log.info(f"verdict {verdict['verdict']} for sha256 {verdict['sha256'][:12]}… allows deploying {args.model}")
    print(json.dumps({"ok": True, "verdict": verdict["verdict"], "sha256": verdict["sha256"]}))
    return 0


# ---- inputs ---------------------------------------------------------------------------------------
def load_inputs(config_path: str) -> tuple[dict[str, Any], Any, Any]:
    """(config, X hold-out, y hold-out) through the training library (imported lazily)."""
    try:
        from ..config import load_config
        from ..data import load_holdout
    except ImportError as exc:  # pragma: no cover - only while training is being built
        raise ModelCIError(f"gate: cannot import the training library ({exc}); "
                           "install modelci completely") from None
    config = load_config(config_path)
    X, y = load_holdout(config)
    return config, X, y


def _has_model(path: str | None) -> bool:
    return bool(path and Path(path, artifact.META_FILE).exists())


def _predict(estimator: Any, X: Any, who: str, meta: dict[str, Any]) -> tuple[Any, Any]:
    cols = [i["name"] for i in meta.get("inputs") or [] if isinstance(i, dict) and "name" in i]
    missing = [c for c in cols if c not in getattr(X, "columns", [])]
    if missing:
        raise _MissingInputs(who, missing)
    frame = X[cols] if cols else X
    try:
        pred = estimator.predict(frame)
    except Exception as exc:  # noqa: BLE001 - any failure to score the hold-out set is an error, not a pass
        raise ModelCIError(f"gate: {who} model failed to predict the hold-out rows "
                           f"({exc.__class__.__name__}: {str(exc)[:200]}); check the model and data") from None
    proba = None
    if hasattr(estimator, "predict_proba"):
        try:
            proba = estimator.predict_proba(frame)
        except Exception:  # noqa: BLE001 - probabilities are optional (only roc_auc needs them)
            proba = None
    return pred, proba


class _MissingInputs(ModelCIError):
    def __init__(self, who: str, missing: list[str]):
        super().__init__(f"gate: {who} model needs input column(s) {', '.join(missing)} that the hold-out "
                         "set does not have")
        self.who = who


def _aligned_proba(estimator: Any, proba: Any, classes: list[Any] | None, who: str) -> Any:
    """Probability columns re-ordered to `classes` (the candidate's), or None if they cannot be."""
    if proba is None or not classes:
        return None
    import numpy as np

    own = [gate._key(c) for c in getattr(estimator, "classes_", [])]
    want = [gate._key(c) for c in classes]
    if sorted(map(str, own)) != sorted(map(str, want)) or len(own) != np.shape(proba)[1]:
        log.warn(f"gate: the {who} model's classes {own} differ from the candidate's {want}; "
                 "its probabilities are not compared")
        return None
    index = {str(c): i for i, c in enumerate(own)}
    return np.asarray(proba)[:, [index[str(c)] for c in want]]


def _extra_metrics(task: str, y: Any, pred: Any, proba: Any, classes: list[Any] | None) -> dict[str, Any]:
    """Metrics from modelci.metrics.compute (if present) for thresholds the gate does not compute."""
    try:
        from ..metrics import compute
    except ImportError:
        return {}
    out = compute(task, y, pred, y_proba=proba, classes=classes)
    if isinstance(out, dict) and isinstance(out.get("metrics"), dict):
        out = out["metrics"]
    return {k: v for k, v in (out or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _major(version: Any) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except (TypeError, ValueError):
        return None


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.get(k) for k in ("name", "version", "sha256", "run_id", "commit", "data_sha256",
                                     "trained_at")}


# ---- command --------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    base = _env("MODELCI_OUT", "out")
    candidate_dir = args.candidate or os.path.join(base, "model")
    out_dir = Path(args.out or os.path.join(base, "gate"))

    stale = out_dir / "verdict.json"
    if stale.exists():  # never leave an old verdict behind if this run fails
        stale.unlink()
    config, X, y = load_inputs(args.config)
    task = config.get("task")
    if not isinstance(task, str):  # load_config fills the default, so only a broken config gets here
        raise ModelCIError(f"{args.config}: task: missing; set task: classification or regression")
    policy = gate.normalize_policy(config.get("gate"), task, source=str(args.config),
                                   default_seed=config.get("seed"))
    if args.dry_run:
        policy["dry_run"] = True

    estimator, meta = artifact.load_model(candidate_dir)
    if meta.get("task") and meta["task"] != task:
        raise ModelCIError(f"{candidate_dir}/model.json: task: {meta['task']} but {args.config} says {task}; "
                           "retrain the model with this config")
    classes = list(meta.get("classes") or []) if task == "classification" else None
    log.info(f"gate: candidate {meta.get('name')} sha256 {meta['sha256'][:12]}… on {len(y)} hold-out rows")
    cand_pred, cand_proba = _predict(estimator, X, "candidate", meta)

    champ_meta: dict[str, Any] | None = None
    champ_pred = champ_proba = champ_est = None
    champion_note = None
    if _has_model(args.champion):
        champ_est, champ_meta = artifact.load_model(args.champion)
        try:
            champ_pred, champ_proba = _predict(champ_est, X, "champion", champ_meta)
        except _MissingInputs as exc:
            cfg_major = (config.get("model") or {}).get("major")
            champ_major = _major(champ_meta.get("version"))
            if cfg_major is None or champ_major is None or int(cfg_major) <= champ_major:
                raise ModelCIError(f"{exc}; the input signature changed: bump model.major in "
                                   f"{args.config} (champion is {champ_meta.get('version')})") from None
            champion_note = (f"champion {champ_meta.get('version')} cannot score the new inputs (major "
                             f"{champ_major} -> {cfg_major}); thresholds only")
            log.warn(champion_note)
            champ_pred = None
        if champ_pred is not None:
            log.info(f"gate: champion {champ_meta.get('version')} sha256 {champ_meta['sha256'][:12]}…")
    else:
        log.info("gate: no champion (first model): thresholds only")

    result = gate.evaluate(
        policy, task, y, cand_pred, champ_pred, classes=classes,
        candidate_extra=_extra_metrics(task, y, cand_pred, cand_proba, classes),
        champion_extra=(_extra_metrics(task, y, champ_pred, champ_proba, classes)
                        if champ_pred is not None else None),
        display=config.get("metrics") or None,
        candidate_proba=_aligned_proba(estimator, cand_proba, classes, "candidate"),
        champion_proba=(_aligned_proba(champ_est, champ_proba, classes, "champion")
                        if champ_pred is not None else None),
    )
    result["schema"] = gate.VERDICT_SCHEMA
    result["sha256"] = meta["sha256"]
    result["model"] = _identity(meta)
    result["champion_sha256"] = champ_meta["sha256"] if champ_pred is not None and champ_meta else None
    result["champion"] = _identity(champ_meta) if champ_pred is not None and champ_meta else None
    if champion_note:
        result["reasons"].append(champion_note)
    result["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result["pipeline"] = {k: _env(k) for k in ("CI_PIPELINE_ID", "CI_PIPELINE_URL", "CI_JOB_URL",
                                                  "CI_COMMIT_SHA", "CI_COMMIT_REF_NAME")}
    result["exit_code"] = gate.exit_code(result)
    write_outputs(result, out_dir, task, y, cand_pred)

    summary = (out_dir / "summary.md").read_text()
    with log.section("modelci_gate_summary", f"gate verdict: {result['verdict']}", collapsed=True):
        print(summary, file=sys.stderr, flush=True)
    if result["dry_run"]:
        log.warn(f"gate: DRY RUN — verdict {result['verdict']} is reported only; it never allows a deploy")
    else:
        log.info(f"gate: {result['verdict']}, passed={result['passed']}")
    print(json.dumps({"verdict": result["verdict"], "passed": result["passed"], "dry_run": result["dry_run"],
                      "would_pass": result["would_pass"], "sha256": result["sha256"],
                      "champion_sha256": result["champion_sha256"], "out": str(out_dir),
                      "exit_code": result["exit_code"]}))
    if args.report:
        from . import report as report_cmd

        report_args = argparse.Namespace(gate_dir=str(out_dir), mr=_env("CI_MERGE_REQUEST_IID"),
                                         commit=_env("CI_COMMIT_SHA"), plot=True)
        try:
            with contextlib.redirect_stdout(sys.stderr):  # stdout keeps exactly one JSON document
                report_cmd.run(report_args)
        except ModelCIError as err:
            if result["exit_code"] == 0:
                raise
            log.warn(f"report: {err}")
    return result["exit_code"]


def write_outputs(result: dict[str, Any], out_dir: Path, task: str, y: Any = None, cand_pred: Any = None
                  ) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    verdict = gate.public_result(result)
    png = gate.plot_png(result, out_dir / "gate.png", task, y, cand_pred)
    image = "![gate plot](gate.png)" if png else None
    (out_dir / "junit.xml").write_text(gate.junit_xml(verdict))
    (out_dir / "metrics.txt").write_text(gate.metrics_text(verdict))
    (out_dir / "summary.md").write_text(gate.summary_markdown(verdict, image))
    # the verdict last: a reader that finds verdict.json finds the rest of the evidence too
    artifact.write_json_atomic(out_dir / "verdict.json", verdict)
