"""`modelci report`: post (or update in place) the gate evidence as a note on the MR or the commit.

  modelci report --gate-dir out/gate [--mr IID] [--commit SHA] [--no-plot]

The MR comes from CI_MERGE_REQUEST_IID, else the commit from CI_COMMIT_SHA. Needs a token with the
`api` scope in MODELCI_GITLAB_TOKEN (CI_JOB_TOKEN cannot write notes).
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from .. import gitlab_api, log
from ..report import post_report


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="post the gate verdict, metrics and plot as an MR/commit note",
                              description=__doc__.splitlines()[0])
    p.add_argument("--gate-dir", default=log.env("MODELCI_GATE_OUT", "out/gate"),
                   help="directory written by `modelci gate` (env MODELCI_GATE_OUT; default out/gate)")
    p.add_argument("--mr", default=log.env("CI_MERGE_REQUEST_IID"),
                   help="merge request iid (default CI_MERGE_REQUEST_IID)")
    p.add_argument("--commit", default=log.env("CI_COMMIT_SHA"),
                   help="commit to comment on when there is no MR (default CI_COMMIT_SHA)")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="do not upload the plot")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    client = gitlab_api.from_env(scope=gitlab_api.SCOPE_API)
    result = post_report(client, args.gate_dir, mr_iid=args.mr, commit_sha=args.commit, plot=args.plot)
    where = f"merge request !{result['iid']}" if result["target"] == "merge_request" else \
        f"commit {result['sha'][:8]}"
    log.info(f"report: {result['action']} note {result['note_id']} on {where} ({result['verdict']})")
    print(json.dumps(result))
    return 0
