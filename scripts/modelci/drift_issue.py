"""One GitLab issue per model and environment that tells people about input drift.

`sync(client, report, environment=..., links=..., body=...)` keeps the issue in step with the latest
drift report: it opens the issue on the first drifted check, updates its description (the drift
table, the plot, the links) and adds a note on every later drifted check, and closes it when a check
is clean. An "insufficient-data" check changes nothing and makes no API call. The issue is found by
its label (`modelci::drift`) and a marker line naming the model and the environment, so renaming the
title by hand does not open a second one. (docs/monitoring.md, "The drift issue")
"""
from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from . import log

LABEL = "modelci::drift"


def marker(model: str, environment: str) -> str:
    return f"<!-- modelci-drift:{model}:{environment} -->"


def title(model: str, environment: str) -> str:
    return f"Input drift: {model} in {environment}"


def description(report: dict[str, Any], environment: str, links: dict[str, str], body: str) -> str:
    name = str((report.get("model") or {}).get("name"))
    lines = [marker(name, environment), "", body.rstrip(), ""]
    if links:
        lines += ["### Links", ""] + [f"- {label}: {url}" for label, url in links.items() if url] + [""]
    lines.append("_Updated by `modelci monitor` on every drifted check; closed by the first clean one._")
    return "\n".join(lines) + "\n"


def links(client: Any, report: dict[str, Any], environment: str) -> dict[str, str]:
    """Where to look: the environment's page, the served model version (production's /lineage) and
    the commit it was trained from. One GET of the project and one environments search."""
    out: dict[str, str] = {}
    with client.errors("reading the project for the drift issue's links"):
        web_url = str(client.gl.projects.get(client.project_id).attributes.get("web_url") or "").rstrip("/")
        envs = client.project.environments.list(name=environment, get_all=False)
    env = next((e for e in envs if e.attributes.get("name") == environment), None)
    if web_url:
        out[f"Environment `{environment}`"] = (f"{web_url}/-/environments/{env.attributes['id']}" if env else
                                               f"{web_url}/-/environments?search={quote(environment)}")
    model = report.get("model") or {}
    if report.get("production_url"):
        out[f"Model version {model.get('name')} {model.get('version')}"] = \
            f"{str(report['production_url']).rstrip('/')}/lineage"
    commit = report.get("commit")
    if web_url and commit:
        out["Trained from commit"] = f"{web_url}/-/commit/{commit}"
    return out


def plot_png(report: dict[str, Any], path: str | os.PathLike[str]) -> str | None:
    """Training vs live proportions per bin of each drifted feature (one panel each, at most 6).
    Returns the path, or None when nothing drifted or matplotlib is missing."""
    drifted = [f for f in report.get("features") or [] if f.get("drift") and f.get("bins")][:6]
    if not drifted:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warn("matplotlib is not installed; the drift plot is skipped")
        return None
    fig, axes = plt.subplots(1, len(drifted), figsize=(4.8 * len(drifted), 3.6), squeeze=False)
    for ax, f in zip(axes[0], drifted):
        bins = f["bins"]
        xs = range(len(bins))
        ax.bar([x - 0.2 for x in xs], [b["training"] for b in bins], width=0.4, label="training")
        ax.bar([x + 0.2 for x in xs], [b["live"] for b in bins], width=0.4, label="live")
        ax.set_xticks(list(xs), [str(b["bin"])[:14] for b in bins], rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{f['feature']} ({f['method']} {f['statistic']:.3g})", fontsize=9)
        ax.set_ylabel("share of rows")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def find_open(client: Any, model: str, environment: str) -> Any | None:
    mark = marker(model, environment)
    with client.errors("listing the drift issues"):
        issues = client.project.issues.list(labels=[LABEL], state="opened", get_all=True)
    for issue in issues:
        if mark in (issue.attributes.get("description") or ""):
            return issue
    return None


def sync(client: Any, report: dict[str, Any], *, environment: str, links: dict[str, str],
         body: str) -> dict[str, Any]:
    """Open, update or close the drift issue for the report's model; returns what was done."""
    none = {"action": "none", "iid": None, "web_url": None}
    status = report.get("status")
    if not report.get("drift") and status != "ok":
        return none  # insufficient data: neither drift nor a clean check
    model = str((report.get("model") or {}).get("name"))
    issue = find_open(client, model, environment)
    if report.get("drift"):
        text = description(report, environment, links, body)
        with client.errors("writing the drift issue"):
            if issue is None:
                issue = client.project.issues.create({"title": title(model, environment), "description": text,
                                                      "labels": LABEL})
                action = "opened"
            else:
                issue.description = text
                issue.save()
                issue.notes.create({"body": f"Drift check at {report.get('generated_at')}: still drifting in "
                                            f"{', '.join(report.get('drifted_features') or [])}."})
                action = "updated"
    elif issue is not None:
        with client.errors("closing the drift issue"):
            issue.notes.create({"body": f"The drift check at {report.get('generated_at')} is clean: closing."})
            issue.state_event = "close"
            issue.save()
        action = "closed"
    else:
        return none
    attrs = issue.attributes
    log.info(f"monitor: drift issue #{attrs.get('iid')} {action}: {attrs.get('web_url')}")
    return {"action": action, "iid": attrs.get("iid"), "web_url": attrs.get("web_url")}
