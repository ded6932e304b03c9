"""The gate's evidence, rendered from a verdict document: JUnit XML (one case per check), the GitLab
metrics report, the markdown summary (job log, MR note, summary.md) and the plot.

The text renderers return strings and do no I/O; `plot_png` writes the PNG file it is given.
"""
from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np

from .decision import INCONCLUSIVE, NO_CHANGE, PROMOTE, REJECT, VERDICTS
from .stats import PER_CLASS_METRICS

VERDICT_ICON = {PROMOTE: "✅", REJECT: "❌", NO_CHANGE: "➖", INCONCLUSIVE: "❔"}


def public_result(result: dict[str, Any]) -> dict[str, Any]:
    """The result without private helpers (what verdict.json holds)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


def junit_xml(verdict: dict[str, Any]) -> str:
    """One testcase per gate check; failed checks are <failure>, skipped ones <skipped>."""
    import xml.etree.ElementTree as ET

    checks = verdict["checks"]
    failures = sum(1 for c in checks if not c["passed"])
    skipped = sum(1 for c in checks if c.get("skipped"))
    name = f"modelci gate ({verdict.get('model', {}).get('name') or 'model'})"
    suites = ET.Element("testsuites", name="modelci-gate", tests=str(len(checks)),
                        failures=str(failures), errors="0")
    suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(checks)), failures=str(failures),
                          errors="0", skipped=str(skipped))
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname=f"modelci.gate.{check['kind']}",
                             name=check["name"], time="0")
        if check.get("skipped"):
            ET.SubElement(case, "skipped", message=check["message"])
        elif not check["passed"]:
            fail = ET.SubElement(case, "failure", message=check["message"], type=check["kind"])
            fail.text = check["message"] + (" (dry run: reported, not blocking)" if verdict.get("dry_run")
                                            else "")
        else:
            ET.SubElement(case, "system-out").text = check["message"]
    props = ET.SubElement(suite, "properties")
    for key in ("verdict", "passed", "dry_run", "sha256"):
        ET.SubElement(props, "property", name=key, value=str(verdict.get(key)))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _metric_name(*parts: str) -> str:
    name = "_".join(p for p in parts if p)
    name = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return name if re.match(r"[a-zA-Z_]", name) else f"_{name}"


def metrics_text(verdict: dict[str, Any]) -> str:
    """GitLab `metrics` report (OpenMetrics text): `name value` lines, then `# EOF`."""
    lines: list[str] = []

    def add(name: str, value: Any) -> None:
        if value is None or isinstance(value, str):
            return
        value = float(value)
        if math.isfinite(value):
            lines.append(f"{name} {value:.6g}")

    for who in ("candidate", "champion"):
        for metric, value in sorted((verdict["metrics"].get(who) or {}).items()):
            add(_metric_name("modelci", who, metric), value)
    for label, row in sorted((verdict.get("per_class", {}).get("candidate") or {}).items()):
        for metric in PER_CLASS_METRICS:
            add(_metric_name("modelci_candidate", metric, "class", label), row.get(metric))
    p = verdict["primary"]
    for key in ("improvement", "lo", "hi"):
        add(_metric_name("modelci_gate", p["metric"], key), p.get(key))
    add("modelci_gate_dropped_resamples", p.get("dropped"))
    add("modelci_gate_passed", 1 if verdict["passed"] else 0)
    add("modelci_gate_would_pass", 1 if verdict.get("would_pass") else 0)
    add("modelci_gate_dry_run", 1 if verdict["dry_run"] else 0)
    for v in VERDICTS:
        add(_metric_name("modelci_gate_verdict", v.lower()), 1 if verdict["verdict"] == v else 0)
    return "\n".join(lines) + "\n# EOF\n"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _delta(row: dict[str, Any], key: str = "improvement") -> str:
    d = row.get(key)
    if d is None:
        return "—"
    if row.get("lo") is None:
        return f"{d:+.4f}"
    return f"{d:+.4f} [{row['lo']:+.4f}, {row['hi']:+.4f}]"


def _detail_tables(verdict: dict[str, Any]) -> list[str]:
    out: list[str] = []
    pcd = verdict.get("per_class_deltas") or {}
    if pcd.get("classes"):
        out += ["", f"Per class ({pcd['metric']}, same hold-out rows; Δ with its bootstrap interval):", "",
                "| class | rows | candidate | champion | Δ |", "|---|---:|---:|---:|---:|"]
        for c in pcd["classes"]:
            out.append(f"| {c['class']} | {c['support']} | {_fmt(c['candidate'])} | {_fmt(c['champion'])} | "
                       f"{_delta(c, 'delta')} |")
    if verdict.get("slices"):
        metric = verdict["primary"]["metric"]
        out += ["", f"Slices ({metric}; Δ is the improvement, with its bootstrap interval):", "",
                "| slice | rows | candidate | champion | Δ |", "|---|---:|---:|---:|---:|"]
        for s in verdict["slices"]:
            out.append(f"| {s['column']} = {str(s['slice']).replace('|', '/')} | {s['n_rows']} | "
                       f"{_fmt(s['candidate'])} | {_fmt(s['champion'])} | {_delta(s)} |")
    return out


def summary_markdown(verdict: dict[str, Any], image: str | None = None) -> str:
    """Markdown for the job log, the MR note and summary.md."""
    model = verdict.get("model") or {}
    champ_info = verdict.get("champion") or {}
    p = verdict["primary"]
    icon = VERDICT_ICON.get(verdict["verdict"], "")
    title = f"{icon} **{verdict['verdict']}**"
    if verdict["dry_run"]:
        title += " — dry run: reported only, never counts as passing for a deploy"
    elif verdict["passed"]:
        title += " — passed, may be promoted"
    else:
        title += " — not promotable"
    out = [f"### modelci gate: {model.get('name') or 'model'} {model.get('version') or ''}".rstrip(), "",
           title, ""]
    cand_label = f"candidate `{str(verdict.get('sha256') or '')[:12]}`"
    champ_label = (" ".join(p for p in ("champion", champ_info.get("version"),
                                        f"`{str(verdict.get('champion_sha256'))[:12]}`") if p)
                   if verdict.get("champion_sha256") else "champion (none)")
    cm = verdict["metrics"].get("champion") or {}
    out += [f"| metric | {cand_label} | {champ_label} | Δ |", "|---|---:|---:|---:|"]
    cand_metrics = verdict["metrics"]["candidate"]
    for metric in verdict.get("display_metrics") or list(cand_metrics):
        value = cand_metrics[metric]
        other = cm.get(metric)
        delta = f"{value - other:+.4f}" if other is not None else ""
        star = " (primary)" if metric == p["metric"] else ""
        out.append(f"| {metric}{star} | {value:.4f} | {_fmt(other) if cm else '—'} | {delta} |")
    out.append("")
    if p.get("lo") is not None:
        direction = "higher is better" if p["higher_is_better"] else "lower is better, sign flipped"
        out.append(f"Primary metric **{p['metric']}** ({direction}): improvement {p['improvement']:+.4f}, "
                   f"{round(p['confidence'] * 100)}% paired-bootstrap interval [{p['lo']:+.4f}, {p['hi']:+.4f}] "
                   f"over {p['n_rows']} hold-out rows, {p['samples']} resamples ({p.get('dropped', 0)} dropped: "
                   f"metric undefined), allowed regression {p['allowed_regression']:g} → {p['comparison']}.")
        if p.get("comparison") == INCONCLUSIVE and p.get("rows_needed"):
            out.append("")
            out.append(f"To decide: about {p['rows_needed']} hold-out rows (now {p['n_rows']}) would narrow the "
                       f"interval to gate.max_interval_width; or raise allowed_regression (docs/gate.md).")
    else:
        out.append(f"Primary metric **{p['metric']}** = {p['candidate']:.4f}; no champion: thresholds and "
                   "expectations only.")
    out += _detail_tables(verdict)
    out += ["", "| check | result | detail |", "|---|---|---|"]
    for c in verdict["checks"]:
        status = "skipped" if c.get("skipped") else ("pass" if c["passed"] else "**FAIL**")
        out.append(f"| {c['name']} | {status} | {c['message'].replace('|', '/')} |")
    if image:
        out += ["", image]
    return "\n".join(out) + "\n"


def _forest_rows(result: dict[str, Any]) -> list[tuple[str, float, float | None, float | None]]:
    """(label, Δ, lo, hi): the primary metric, then each class and slice."""
    rows: list[tuple[str, float, float | None, float | None]] = []
    p = result["primary"]
    if p.get("improvement") is not None:
        rows.append((f"{p['metric']} (primary)", p["improvement"], p.get("lo"), p.get("hi")))
    for m in result.get("metric_deltas") or []:
        if m.get("improvement") is not None:
            rows.append((m["metric"], m["improvement"], m.get("lo"), m.get("hi")))
    pcd = result.get("per_class_deltas") or {}
    for c in pcd.get("classes") or []:
        if c.get("delta") is not None:
            rows.append((f"class {c['class']} ({pcd['metric']})", c["delta"], c.get("lo"), c.get("hi")))
    for s in result.get("slices") or []:
        if s.get("improvement") is not None:
            rows.append((f"{s['column']}={s['slice']} (n={s['n_rows']})", s["improvement"], s.get("lo"), s.get("hi")))
    return rows


def plot_png(result: dict[str, Any], path: str | os.PathLike[str], task: str,
             y_true: Any = None, candidate_pred: Any = None) -> str | None:
    """Write a PNG to `path`: the candidate's confusion matrix (classification) or predicted-vs-actual
    (regression), and the differences from the champion (Δ per metric, class and slice with their
    bootstrap intervals, zero and -allowed_regression marked). Returns the path, or None when
    matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from .. import log

        log.warn("matplotlib is not installed; the gate plot is skipped (pip install matplotlib)")
        return None
    rows = _forest_rows(result)
    fig, axes = plt.subplots(1, 2, figsize=(11.5, max(4.4, 0.32 * len(rows) + 1.5)))
    ax = axes[0]
    cmx = result.get("confusion_matrix") or {}
    if task == "classification" and cmx.get("candidate") is not None:
        cm = np.asarray(cmx["candidate"], dtype=float)
        labels = [str(v) for v in cmx["labels"]]
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                        color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("candidate confusion matrix")
    elif y_true is not None and candidate_pred is not None:
        y = np.asarray(y_true, dtype=float)
        pr = np.asarray(candidate_pred, dtype=float)
        ax.scatter(y, pr, s=6, alpha=0.5)
        lo, hi = float(min(y.min(), pr.min())), float(max(y.max(), pr.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        ax.set_title("candidate: predicted vs actual")
    ax = axes[1]
    if rows:
        ypos = np.arange(len(rows))[::-1]
        for yy, (_label, d, low, high) in zip(ypos, rows):
            color = "tab:green" if (low is not None and low > 0) else ("tab:red" if d < 0 else "tab:blue")
            if low is not None and high is not None:
                ax.errorbar(d, yy, xerr=[[d - low], [high - d]], fmt="o", color=color, capsize=3, ms=4)
            else:
                ax.plot(d, yy, "o", color=color, ms=4, mfc="none")
        ax.set_yticks(ypos, [r[0] for r in rows], fontsize=8)
        ax.axvline(0, color="black", lw=1)
        allowed = result["primary"].get("allowed_regression")
        if allowed:
            ax.axvline(-allowed, color="tab:orange", ls=":", lw=1, label=f"-allowed_regression ({allowed:g})")
            ax.legend(loc="lower right", fontsize=7, frameon=False)
        ax.set_xlabel("Δ candidate − champion (improvement; bars: bootstrap interval)")
        ax.set_title(f"differences on the same hold-out rows: {result['primary'].get('comparison')}")
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "no champion (first model):\nthresholds and expectations only", ha="center",
                va="center")
    fig.suptitle(f"modelci gate: {result['verdict']}" + (" (dry run)" if result["dry_run"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)
