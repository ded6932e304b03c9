"""`modelci monitor`: compare production's live inputs with the training data; act on drift.

  modelci monitor --production-url URL [--model DIR | --run-record run.json] [--out out/monitor]
                  [--config model/modelci.yml] [--method psi|ks] [--threshold X]
                  [--environment production] [--no-trigger]

Reads production's /metrics (per-feature input histograms and category counts, app/metrics.py) and
/lineage, and the served model's training statistics (`feature_stats`): from --model (a model
directory) or --run-record, else from the champion image (the version production serves, pulled
from MODELCI_IMAGE_REPO). The statistics must belong to the model production serves (sha256).
Compares per feature (PSI by default; see modelci.monitor) and writes drift.json and drift.md to --out.
Then does what the config's `monitor.on_drift` lists (default [issue]; docs/monitoring.md):
  issue    open or update one GitLab issue per model and environment (label modelci::drift, the
           drift table and plot, links to the environment and the model version); a clean check
           closes it
  retrain  start a retraining pipeline on the default branch through the API, without variables
Both need MODELCI_GITLAB_TOKEN with the `api` scope (Reporter role for issues, Developer to start
a pipeline). --no-trigger makes the check report-only (no issue, no pipeline).

Exit status: 0 and "status": "ok" without drift; 0 and "drift" on drift ("triggered" when a
retraining pipeline was started; "insufficient-data" when production saw too few values to judge);
1 on any error (production unreachable, statistics of another model, API failure).
"""
from __future__ import annotations

import argparse
from typing import Any

from ..settings.monitor import MonitorSettings
from ..steps import Result
from ..steps import monitor as step


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("monitor", help="compare production's inputs with the training data; "
                                              "open a drift issue (and retrain) on drift",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--production-url",
                   help="production base URL serving /metrics and /lineage [MODELCI_PRODUCTION_URL]")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="DIR", help="model directory whose model.json holds the training "
                                                    "statistics [MODELCI_MONITOR_MODEL]")
    src.add_argument("--run-record", metavar="FILE", help="run.json of the training run "
                                                          "[MODELCI_MONITOR_RUN_RECORD]")
    p.add_argument("--image", help="serving image repository, to fetch the champion's model.json when neither "
                                   "--model nor --run-record is given [MODELCI_IMAGE_REPO]")
    p.add_argument("--config", help="model config with the monitor: section [MODELCI_CONFIG, else "
                                    "model/modelci.yml if present]")
    p.add_argument("--method", choices=step.METHODS,
                   help="psi or ks [config monitor.method, else psi]")
    p.add_argument("--threshold", type=float,
                   help="drift threshold [config monitor.drift_threshold, else 0.2 for psi, 0.1 for ks]")
    p.add_argument("--min-rows", type=int,
                   help="live values a feature needs before it can drift [MODELCI_MONITOR_MIN_ROWS, 100]")
    p.add_argument("--out", help="report directory (drift.json, drift.md) [MODELCI_MONITOR_OUT, out/monitor]")
    p.add_argument("--environment", help="environment the monitor watches, named by the drift issue "
                                         "[MODELCI_MONITOR_ENVIRONMENT, production]")
    p.add_argument("--no-trigger", dest="trigger", action="store_const", const=False, default=None,
                   help="report only: no drift issue, no retraining pipeline (deprecated: "
                        "MODELCI_MONITOR_TRIGGER=false)")
    p.add_argument("--ref", help="branch of the retraining pipeline [CI_DEFAULT_BRANCH, else the project's "
                                 "default]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Result:
    return step.run(MonitorSettings.from_args(args))
