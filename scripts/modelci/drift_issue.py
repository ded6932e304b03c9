"""One GitLab issue per model and environment that tells people about input drift.

`sync(client, report, environment=..., links=...)` keeps the issue in step with the latest drift
report: it opens the issue on the first drifted check, updates its description (the drift table and
links) on every later drifted check, and closes it when a check is clean. An "insufficient-data"
check changes nothing. The issue is found by its label (`modelci::drift`) and a marker line naming
the model and the environment, so renaming the title by hand does not open a second one.
(docs/monitoring.md, "Drift issues")
"""
from __future__ import annotations

from typing import Any

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
    model = str((report.get("model") or {}).get("name"))
    status = report.get("status")
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
                action = "updated"
    elif status == "ok" and issue is not None:
        with client.errors("closing the drift issue"):
            issue.notes.create({"body": "A later drift check is clean: closing."})
            issue.state_event = "close"
            issue.save()
        action = "closed"
    else:
        return {"action": "none", "iid": None, "web_url": None}
    attrs = issue.attributes
    log.info(f"monitor: drift issue #{attrs.get('iid')} {action}: {attrs.get('web_url')}")
    return {"action": action, "iid": attrs.get("iid"), "web_url": attrs.get("web_url")}
