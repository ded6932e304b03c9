"""The report step: post (or update in place) the gate evidence as one note on the MR or the commit."""
from __future__ import annotations

from .. import gitlab_api, log
from ..report import post_report
from ..settings.report import ReportSettings
from . import Result


def run(s: ReportSettings) -> Result:
    client = gitlab_api.from_env(scope=gitlab_api.SCOPE_API)
    result = post_report(client, s.gate_dir, mr_iid=s.mr, commit_sha=s.commit, plot=s.plot)
    where = f"merge request !{result['iid']}" if result["target"] == "merge_request" else \
        f"commit {result['sha'][:8]}"
    log.info(f"report: {result['action']} note {result['note_id']} on {where} ({result['verdict']})")
    return Result(result, one_line=True)
