"""The gate step: score candidate and champion on the same hold-out rows, apply the policy, write the
evidence (verdict.json, junit.xml, metrics.txt, summary.md, gate.png) and optionally post the note.

Exit codes (docs/gate.md): 0 passed (or dry run), 2 REJECT, 3 NO_CHANGE or INCONCLUSIVE that the
policy does not promote, 1 error (bad config or data, a model that cannot predict, non-finite numbers).
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import artifact, gate, log
from ..errors import ModelCIError
from ..settings.gate import GateSettings
from . import Result
from . import evaluate as evaluate_step


def load_inputs(config_path: str) -> tuple[dict[str, Any], Any, Any]:
    """(config, X hold-out, y hold-out) through the training library."""
    from ..config import load_config
    from ..data import load_holdout

    config = load_config(config_path)
    X, y = load_holdout(config)
    return config, X, y


def _has_model(path: str | None) -> bool:
    return bool(path and Path(path, artifact.META_FILE).exists())


def _major(version: Any) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except (TypeError, ValueError):
        return None


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.get(k) for k in ("name", "version", "sha256", "run_id", "commit", "data_sha256",
                                     "trained_at")}


def _champion(s: GateSettings, config: dict[str, Any], X: Any, y: Any, classes: list[Any] | None
              ) -> tuple[dict[str, Any] | None, evaluate_step.Scored | None, str | None]:
    """(champion meta, its scores, a note) — scores None for the first model or an older signature."""
    if not _has_model(s.champion):
        log.info("gate: no champion (first model): thresholds and expectations only")
        return None, None, None
    champ_est, champ_meta = artifact.load_model(str(s.champion))
    try:
        scored = evaluate_step.score_model(config, champ_est, champ_meta, X, y, "champion", classes)
    except evaluate_step.MissingInputs as exc:
        cfg_major = (config.get("model") or {}).get("major")
        champ_major = _major(champ_meta.get("version"))
        if cfg_major is None or champ_major is None or int(cfg_major) <= champ_major:
            raise ModelCIError(f"{exc}; the input signature changed: bump model.major in "
                               f"{s.config} (champion is {champ_meta.get('version')})") from None
        note = (f"champion {champ_meta.get('version')} cannot score the new inputs (major "
                f"{champ_major} -> {cfg_major}); thresholds only")
        log.warn(note)
        return champ_meta, None, note
    log.info(f"gate: champion {champ_meta.get('version')} sha256 {champ_meta['sha256'][:12]}…")
    return champ_meta, scored, None


def decide(s: GateSettings, config: dict[str, Any], X: Any, y: Any) -> dict[str, Any]:
    """The verdict document (with `_diffs` for the plot) for the settings' candidate and champion."""
    task = config.get("task")
    if not isinstance(task, str):  # load_config fills the default, so only a broken config gets here
        raise ModelCIError(f"{s.config}: task: missing; set task: classification or regression")
    policy = gate.normalize_policy(config.get("gate"), task, source=str(s.config), default_seed=config.get("seed"))
    if s.dry_run:
        policy["dry_run"] = True
    estimator, meta = artifact.load_model(s.candidate)
    if meta.get("task") and meta["task"] != task:
        raise ModelCIError(f"{s.candidate}/model.json: task: {meta['task']} but {s.config} says {task}; "
                           "retrain the model with this config")
    classes = list(meta.get("classes") or []) if task == "classification" else None
    log.info(f"gate: candidate {meta.get('name')} sha256 {meta['sha256'][:12]}… on {len(y)} hold-out rows")
    cand = evaluate_step.score_model(config, estimator, meta, X, y, "candidate", classes)
    champ_meta, champ, note = _champion(s, config, X, y, classes)

    from ..gate import behaviour

    columns = evaluate_step.input_columns(meta)
    expectations = behaviour.run_expectations(
        lambda frame: evaluate_step.predict(config, estimator, frame, y)[0], policy["expectations"], columns,
        source=str(s.config))
    slices = []
    for i, spec in enumerate(policy["slices"]):
        labels, order = behaviour.slice_labels(X, spec, source=str(s.config), index=i)
        slices.append({"column": spec["column"], "labels": labels, "order": order})
    result = gate.evaluate(
        policy, task, y, cand.pred, champ.pred if champ else None, classes=classes,
        candidate_extra=cand.metrics["metrics"], champion_extra=champ.metrics["metrics"] if champ else None,
        display=config.get("metrics") or None, candidate_proba=cand.proba,
        champion_proba=champ.proba if champ else None, expectation_checks=expectations, slices=slices)
    result.update({
        "schema": gate.VERDICT_SCHEMA, "sha256": meta["sha256"], "model": _identity(meta),
        "champion_sha256": champ_meta["sha256"] if champ and champ_meta else None,
        "champion": _identity(champ_meta) if champ and champ_meta else None,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pipeline": dict(s.pipeline),
    })
    if note:
        result["reasons"].append(note)
    result["exit_code"] = gate.exit_code(result)
    result["_y"], result["_pred"] = y, cand.pred
    return result


def write_outputs(result: dict[str, Any], out_dir: Path, task: str, y: Any = None, cand_pred: Any = None
                  ) -> None:
    """The evidence files; verdict.json last, so a reader that finds it finds the rest too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    verdict = gate.public_result(result)
    png = gate.plot_png(result, out_dir / "gate.png", task, y, cand_pred)
    image = "![gate plot](gate.png)" if png else None
    (out_dir / "junit.xml").write_text(gate.junit_xml(verdict))
    (out_dir / "metrics.txt").write_text(gate.metrics_text(verdict))
    (out_dir / "summary.md").write_text(gate.summary_markdown(verdict, image))
    artifact.write_json_atomic(out_dir / "verdict.json", verdict)


def _report(s: GateSettings, out_dir: Path, exit_code: int) -> dict[str, Any] | None:
    from .. import gitlab_api
    from ..report import post_report

    try:
        client = gitlab_api.from_env(scope=gitlab_api.SCOPE_API)
        posted = post_report(client, out_dir, mr_iid=s.mr_iid, commit_sha=s.commit_sha, plot=True)
    except ModelCIError as err:
        if exit_code == 0:
            raise
        log.warn(f"report: {err}")
        return None
    log.info(f"report: {posted['action']} note {posted['note_id']} ({posted['verdict']})")
    return posted


def run(s: GateSettings) -> Result:
    out_dir = Path(s.out)
    stale = out_dir / "verdict.json"
    if stale.exists():  # never leave an old verdict behind if this run fails
        stale.unlink()
    config, X, y = load_inputs(s.config)
    result = decide(s, config, X, y)
    write_outputs(result, out_dir, config["task"], result.pop("_y"), result.pop("_pred"))

    summary = (out_dir / "summary.md").read_text()
    with log.section("modelci_gate_summary", f"gate verdict: {result['verdict']}", collapsed=True):
        print(summary, file=sys.stderr, flush=True)
    if result["dry_run"]:
        log.warn(f"gate: DRY RUN — verdict {result['verdict']} is reported only; it never allows a deploy")
    else:
        log.info(f"gate: {result['verdict']}, passed={result['passed']}")
    data = {k: result[k] for k in ("verdict", "passed", "dry_run", "would_pass", "sha256", "champion_sha256",
                                   "exit_code")}
    data["out"] = str(out_dir)
    if s.report:
        data["report"] = _report(s, out_dir, result["exit_code"])
    return Result(data=data, exit_code=result["exit_code"])


def check_verdict(verdict_path: str, model_dir: str) -> Result:
    """`modelci gate check-verdict`: refuse a model without a passing, non-dry-run verdict for it."""
    verdict = gate.require_passing_verdict(verdict_path, model_dir)
    log.info(f"verdict {verdict['verdict']} for sha256 {verdict['sha256'][:12]}… allows deploying {model_dir}")
    return Result({"ok": True, "verdict": verdict["verdict"], "sha256": verdict["sha256"]})
