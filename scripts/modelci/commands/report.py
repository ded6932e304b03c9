"""`modelci report`: post (or update in place) the gate evidence as a note on the MR or the commit.

  modelci report --gate-dir out/gate [--mr IID] [--commit SHA] [--no-plot]

The MR comes from CI_MERGE_REQUEST_IID, else the commit from CI_COMMIT_SHA. Needs a token with the
`api` scope in MODELCI_GITLAB_TOKEN (CI_JOB_TOKEN cannot write notes).
"""
from __future__ import annotations

import argparse
from typing import Any

from ..settings.report import ReportSettings
from ..steps import Result
from ..steps import report as step


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="post the gate verdict, metrics and plot as an MR/commit note",
                              description=__doc__.splitlines()[0])
    p.add_argument("--gate-dir", help="directory written by `modelci gate` (env MODELCI_GATE_OUT; default "
                                      "OUT/gate, OUT from MODELCI_OUT or out)")
    p.add_argument("--mr", help="merge request iid (default CI_MERGE_REQUEST_IID)")
    p.add_argument("--commit", help="commit to comment on when there is no MR (default CI_COMMIT_SHA)")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="do not upload the plot")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Result:
    return step.run(ReportSettings.from_args(args))
