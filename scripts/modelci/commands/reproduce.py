"""`modelci reproduce`: retrain from a run record and check that the metrics come out the same.

    modelci reproduce --run-record out/run.json [--out DIR] [--base-dir DIR] [--tolerance X]

Uses the resolved config stored in the record (not today's config file), checks every data file and
training input (entry point module, stop-word file) against the sha256 recorded, retrains, and compares
each hold-out metric and the best hyperparameters. Prints one JSON document {"match": bool, ...};
exit 0 on a match, 1 on a mismatch or when an input changed. The model artifact is not needed.

Comparison: exact (tolerance 0) when the run was deterministic (every random_state seeded, no custom
entry point) and the library versions are the recorded ones; otherwise |recorded - reproduced| <= 0.01
for every metric (--tolerance overrides both).
"""
from __future__ import annotations

import argparse

from ..settings.reproduce import ReproduceSettings
from ..steps import Result
from ..steps import reproduce as step


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("reproduce", help="retrain from a run record (run.json) and check the metrics match",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--run-record", default=None, help="run record written by `modelci train` (default OUT/run.json, "
                                                      "OUT from MODELCI_OUT or 'out')")
    p.add_argument("--out", help="write the retrained model, run record and metrics here (default: a temporary "
                                 "directory, removed afterwards)")
    p.add_argument("--base-dir", help="directory the recorded config's paths are relative to (default: the "
                                      "directory of the recorded config_file, from the current directory)")
    p.add_argument("--tolerance", type=float, default=None,
                   help=f"allowed absolute metric difference (default 0 for deterministic runs with the same "
                        f"library versions, else {step.DEFAULT_TOLERANCE})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Result:
    return step.run(ReproduceSettings.from_args(args))
