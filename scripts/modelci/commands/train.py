"""`modelci train`: train the model described by the config and write the model directory, the run
record and the metrics.

    modelci train [--config model/modelci.yml] [--out out] [--cache-dir DIR] [--force]

Writes OUT/model/ (model.joblib, model.json, smoke.json), OUT/run.json and OUT/metrics.json, and prints
one JSON summary on stdout. Outputs are written to a temporary directory next to OUT and swapped in at
the end, so a failed run leaves OUT's outputs as they were.

Reuse: with a cache directory (--cache-dir or MODELCI_CACHE_DIR), a model trained earlier from the same
reuse key (data files, resolved config, training code, library versions; see modelci.runrecord) is
copied to OUT instead of training again. --force or FORCE_RETRAIN=true trains anyway.
"""
from __future__ import annotations

import argparse

from ..settings.train import TrainSettings
from ..steps import Result
from ..steps import train as step


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train the model described by the config (writes OUT/model, OUT/run.json, OUT/metrics.json)",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="model config file (env MODELCI_CONFIG, default model/modelci.yml)")
    p.add_argument("--out", help="output directory (env MODELCI_OUT, default out)")
    p.add_argument("--cache-dir", help="reuse/store models by reuse key in this directory (env MODELCI_CACHE_DIR)")
    p.add_argument("--force", action="store_true", help="train even if the cache holds a model for this key "
                                                        "(env FORCE_RETRAIN=true)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Result:
    return step.run(TrainSettings.from_args(args))
