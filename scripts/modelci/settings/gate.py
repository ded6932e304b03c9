"""Settings of `modelci gate` (docs/gate.md): flag > environment > default."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from . import env, get, pick, pick_bool, var
from .common import CANDIDATE, CHAMPION, CONFIG, GATE_OUT, OUT

DRY_RUN = var("MODELCI_GATE_DRY_RUN", "Report the gate's verdict without blocking (overrides gate.dry_run); a "
              "dry-run verdict never authorises a deploy.", "false", kind="bool", used_by=("gate",))
REPORT = var("MODELCI_REPORT", "After the gate's verdict (whatever it is), post the evidence as the MR or commit "
             "note (needs MODELCI_GITLAB_TOKEN with the api scope).", "false", kind="bool", used_by=("gate",))


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
        base = get(OUT.name) or "out"
        return cls(
            config=pick(getattr(args, "config", None), CONFIG.name) or "model/modelci.yml",
            candidate=pick(getattr(args, "candidate", None), CANDIDATE.name) or os.path.join(base, "model"),
            champion=pick(getattr(args, "champion", None), CHAMPION.name),
            out=pick(getattr(args, "out", None), GATE_OUT.name) or os.path.join(base, "gate"),
            dry_run=pick_bool(getattr(args, "dry_run", None), DRY_RUN.name),
            report=pick_bool(getattr(args, "report", None), REPORT.name),
            mr_iid=env("CI_MERGE_REQUEST_IID"),
            commit_sha=env("CI_COMMIT_SHA"),
            pipeline=tuple((k, env(k)) for k in ("CI_PIPELINE_ID", "CI_PIPELINE_URL", "CI_JOB_URL",
                                                 "CI_COMMIT_SHA", "CI_COMMIT_REF_NAME")),
        )
