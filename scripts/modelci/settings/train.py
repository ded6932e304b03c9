"""Settings of `modelci train` (flag > environment > default)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from . import env, pick, pick_bool, var
from .common import CONFIG, FORCE_RETRAIN, OUT

CACHE_DIR = var("MODELCI_CACHE_DIR", "Reuse/store trained models by reuse key in this directory (the "
                "train component sets .modelci-cache, kept by the CI cache).", kind="path", used_by=("train",))


@dataclass(frozen=True)
class TrainSettings:
    config: str
    out: Path
    cache_dir: str | None
    force: bool
    pipeline_id: str | None = None   # CI_PIPELINE_ID / CI_JOB_ID, recorded in run.json
    job_id: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainSettings:
        return cls(config=pick(args.config, CONFIG.name) or "model/modelci.yml",
                   out=Path(pick(args.out, OUT.name) or "out"),
                   cache_dir=pick(args.cache_dir, CACHE_DIR.name),
                   force=pick_bool(True if args.force else None, FORCE_RETRAIN.name),
                   **ci_ids())


def ci_ids() -> dict[str, str | None]:
    """The GitLab pipeline and job a run record names."""
    return {"pipeline_id": env("CI_PIPELINE_ID"), "job_id": env("CI_JOB_ID")}
