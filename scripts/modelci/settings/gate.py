"""Settings of `modelci gate` (docs/gate.md): flag > environment > default."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .. import log
from . import VARIABLES, get, parse_bool, pick, var


def _declare(name: str, help: str, default: str | None = None, **kw: Any) -> None:
    # Variables other steps read too may already be declared (settings/common.py); one declaration wins.
    if name not in VARIABLES:
        var(name, help, default, **kw)


var("MODELCI_CONFIG", "Path of the model config file (modelci.yml).", "model/modelci.yml", kind="path")
_declare("MODELCI_OUT", "The training job's output directory; other outputs default to paths under it.", "out",
         kind="path", used_by=("train", "gate"))
_declare("MODELCI_CANDIDATE", "The candidate model directory (default OUT/model).", kind="path",
         used_by=("gate", "build"))
_declare("MODELCI_CHAMPION", "The champion's (production's) model directory; absent or empty: no champion "
         "(the first model).", kind="path", aliases=("MODELCI_CHAMPION_DIR",), used_by=("champion", "gate"))
_declare("MODELCI_GATE_OUT", "The gate's evidence directory (verdict.json, junit.xml, metrics.txt, summary.md, "
         "gate.png); default OUT/gate.", kind="path", used_by=("gate", "report"))
var("MODELCI_GATE_DRY_RUN", "Report the gate's verdict without blocking (overrides gate.dry_run); a dry-run "
    "verdict never authorises a deploy.", "false", kind="bool", used_by=("gate",))
var("MODELCI_REPORT", "After the gate's verdict (whatever it is), post the evidence as the MR or commit note "
    "(needs MODELCI_GITLAB_TOKEN with the api scope).", "false", kind="bool", used_by=("gate",))


@dataclass(frozen=True)
class GateSettings:
    config: str
    candidate: str
    champion: str | None
    out: str
    dry_run: bool
    report: bool
    mr_iid: str | None = None       # CI_MERGE_REQUEST_IID, where the report goes
    commit_sha: str | None = None   # CI_COMMIT_SHA, where the report goes without an MR
    pipeline: tuple[tuple[str, str | None], ...] = ()  # CI_* context recorded in verdict.json

    @classmethod
    def from_args(cls, args: Any) -> GateSettings:
        base = get("MODELCI_OUT") or "out"
        dry = getattr(args, "dry_run", None)
        report = getattr(args, "report", None)
        return cls(
            config=pick(getattr(args, "config", None), "MODELCI_CONFIG") or "model/modelci.yml",
            candidate=pick(getattr(args, "candidate", None), "MODELCI_CANDIDATE") or os.path.join(base, "model"),
            champion=pick(getattr(args, "champion", None), "MODELCI_CHAMPION"),
            out=pick(getattr(args, "out", None), "MODELCI_GATE_OUT") or os.path.join(base, "gate"),
            dry_run=bool(dry) if dry is not None else parse_bool(get("MODELCI_GATE_DRY_RUN"),
                                                                 name="MODELCI_GATE_DRY_RUN"),
            report=bool(report) if report is not None else parse_bool(get("MODELCI_REPORT"), name="MODELCI_REPORT"),
            mr_iid=log.env("CI_MERGE_REQUEST_IID"),
            commit_sha=log.env("CI_COMMIT_SHA"),
            pipeline=tuple((k, log.env(k)) for k in ("CI_PIPELINE_ID", "CI_PIPELINE_URL", "CI_JOB_URL",
                                                     "CI_COMMIT_SHA", "CI_COMMIT_REF_NAME")),
        )
