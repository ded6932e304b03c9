"""Settings of `modelci monitor` (and the variables of the scheduled monitor pipeline)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from .. import log
from . import env, pick, pick_bool, pick_int, raw, var
from .common import CONFIG, IMAGE_REPO, PRODUCTION_URL

DRIFT_RETRAIN = var("MODELCI_DRIFT_RETRAIN", "No longer set by the monitor (its retraining pipeline has no "
                    "variables: an API pipeline on the default branch retrains); accepted for old schedules.",
                    "false", kind="bool",
                    used_by=("monitor", "templates"))
MONITOR_MODEL = var("MODELCI_MONITOR_MODEL", "Model directory whose model.json holds the training "
                    "statistics (default: the champion's, fetched from MODELCI_IMAGE_REPO).", kind="path",
                    used_by=("monitor",))
MONITOR_RUN_RECORD = var("MODELCI_MONITOR_RUN_RECORD", "run.json of the served model's training run, as the "
                         "source of the training statistics.", kind="path", used_by=("monitor",))
MONITOR_MIN_ROWS = var("MODELCI_MONITOR_MIN_ROWS", "Live values a feature needs before it can drift.", "100",
                       kind="int", used_by=("monitor",))
MONITOR_OUT = var("MODELCI_MONITOR_OUT", "Directory of the drift report (drift.json, drift.md).",
                  "out/monitor", kind="path", used_by=("monitor",))
MONITOR_TRIGGER = var("MODELCI_MONITOR_TRIGGER", "Deprecated: list `retrain` in the config's monitor.on_drift "
                      "instead. Still read: false makes the check report-only, like --no-trigger (no drift issue, "
                      "no retraining pipeline).", "true", kind="bool", used_by=("monitor",))
MONITOR_ENVIRONMENT = var("MODELCI_MONITOR_ENVIRONMENT", "Name of the environment the monitor watches (the drift "
                          "issue names it and links to it).", "production", used_by=("monitor",))


@dataclass(frozen=True)
class MonitorSettings:
    production_url: str | None
    model: str | None
    run_record: str | None
    image: str | None
    config: str | None          # None: model/modelci.yml when it exists
    method: str | None
    threshold: float | None
    min_rows: int
    out: str
    trigger: bool               # False (--no-trigger): report only: no drift issue, no retraining pipeline
    ref: str | None
    environment: str = "production"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> MonitorSettings:
        return cls(production_url=pick(args.production_url, PRODUCTION_URL.name),
                   model=pick(args.model, MONITOR_MODEL.name),
                   run_record=pick(args.run_record, MONITOR_RUN_RECORD.name),
                   image=pick(args.image, IMAGE_REPO.name),
                   config=args.config or raw(CONFIG.name),
                   method=args.method, threshold=args.threshold,
                   min_rows=pick_int(args.min_rows, MONITOR_MIN_ROWS.name) or 0,
                   out=pick(args.out, MONITOR_OUT.name) or "out/monitor",
                   trigger=_trigger(args.trigger),
                   ref=args.ref or env("CI_DEFAULT_BRANCH"),
                   environment=pick(getattr(args, "environment", None), MONITOR_ENVIRONMENT.name) or "production")


def _trigger(flag: bool | None) -> bool:
    if flag is None and raw(MONITOR_TRIGGER.name) is not None:
        log.warn(f"{MONITOR_TRIGGER.name} is deprecated: list what a drifted check does in the config's "
                 f"monitor.on_drift ([issue] or [issue, retrain]); --no-trigger makes a check report-only")
    return pick_bool(flag, MONITOR_TRIGGER.name)

