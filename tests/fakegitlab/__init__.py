"""A small, strict fake of the GitLab REST API (v4) for tests: a real HTTP server on 127.0.0.1.

Only the endpoints modelci uses are implemented, with the paths, methods, auth headers, pagination
and response shapes of GitLab's REST API documentation:

  GET  /projects/:id
  GET  /projects/:id/packages                                   (packages API, filters + pagination)
  DELETE /projects/:id/packages/:package_id                     (clean-up in test_real_gitlab)
  GET  /projects/:id/packages/:package_id/package_files
  PUT  /projects/:id/packages/generic/:name/:version/:file_name  (generic packages: upload)
  GET  /projects/:id/packages/generic/:name/:version/:file_name  (generic packages: download)
  GET  /projects/:id/merge_requests/:iid
  GET  /projects/:id/merge_requests/:iid/notes                  (notes API, sort/order_by, pagination)
  POST /projects/:id/merge_requests/:iid/notes
  GET  /projects/:id/merge_requests/:iid/notes/:note_id
  PUT  /projects/:id/merge_requests/:iid/notes/:note_id
  GET  /projects/:id/repository/commits/:sha/discussions        (discussions API, pagination)
  POST /projects/:id/repository/commits/:sha/discussions
  PUT  /projects/:id/repository/commits/:sha/discussions/:discussion_id/notes/:note_id
  POST /projects/:id/uploads                                    (markdown uploads, multipart `file`)
  PUT  /projects/:id                                            (projects API edit: CI/CD settings)
  GET  POST /projects/:id/environments, GET /projects/:id/environments/:environment_id
  GET  POST /projects/:id/protected_environments                (Premium+; 404 on a "free" project)
  GET  PUT DELETE /projects/:id/protected_environments/:name    (deploy_access_levels, approval_rules)
  GET  POST /projects/:id/variables, GET PUT DELETE /projects/:id/variables/:key
  GET  POST /projects/:id/pipeline_schedules, GET PUT DELETE /projects/:id/pipeline_schedules/:id
  POST /projects/:id/pipeline_schedules/:id/variables, PUT DELETE .../variables/:key
  GET  /projects/:id/deployments                                (environment, status, order_by, sort; job token ok)
  POST /projects/:id/pipeline                                   (create a pipeline, with variables:
                                                                 ci_pipeline_variables_minimum_override_role)
  GET  POST /projects/:id/issues                                (state/labels filters, pagination)
  GET  PUT /projects/:id/issues/:issue_iid                      (edit; state_event close|reopen)
  GET  POST /projects/:id/issues/:issue_iid/notes
  GET  /jwt/auth (outside /api/v4)                              (container registry token service: a real
                                                                 registry with `auth: token` sends clients here)

Strictness: 401 for a missing or unknown token (PRIVATE-TOKEN, JOB-TOKEN or Authorization: Bearer);
a job token only works on the package endpoints (as on GitLab); 403 insufficient_scope when the
token's scopes do not cover the endpoint; 403 for a role too low to write packages (and for the
project settings, protected environments and CI/CD variables, below Maintainer; environments,
schedules and pipelines, below Developer); 404 for an
unknown route, project, merge request, commit, package or note (and for a project the token's user
cannot see); 405 for a known route with the wrong method.

Test controls: `fail_next(count, status=503, retry_after=None, path_contains=None, mode="status")`
makes the next matching requests fail (mode "reset" drops the connection, "delay" sleeps `delay`
seconds first); `requests` is the request log; `dump()` is the whole state (also written as JSON to
`state_file` after every request). Other processes can use the control routes (no auth):
GET /__fake__/state, POST /__fake__/fail {count, status, retry_after, path_contains, mode, delay},
POST /__fake__/reset-log, POST /__fake__/deployment {project, environment, sha, status, external_url}
(records a deployment as GitLab would after a deploy job).

Layout: fakegitlab/server.py is the core (HTTP server, routing, auth, failure injection, pagination,
state dump); each API area is one module with an `Area` subclass (fakegitlab/base.py), registered in
the one list fakegitlab/areas.py:AREAS. tests/gitlab_fake.py is the entry point (pytest fixture and
command line).

Run standalone for pipeline tests:
  python tests/gitlab_fake.py --port 0 --token glpat-xyz --job-token jobtok --project 42:group/project \
      --mr 7 --commit <sha> --state /tmp/fake-state.json
It prints one JSON line {"url": ..., "api_url": ..., "port": ...} on stdout when ready.
"""
from __future__ import annotations

import argparse
import json
import signal
import threading
from typing import Any

from .http import API, HTTPError, Request
from .server import FakeGitLab

__all__ = ["API", "FakeGitLab", "HTTPError", "Request", "main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fake GitLab API for modelci pipeline tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", action="append", default=[], help="personal/project token with api scope")
    ap.add_argument("--read-token", action="append", default=[], help="token with read_api scope only")
    ap.add_argument("--developer-token", action="append", default=[],
                    help="token with api scope of a Developer (below the pipeline-variable minimum role)")
    ap.add_argument("--job-token", action="append", default=[], help="CI job token")
    ap.add_argument("--project", action="append", default=[], help="ID:group/path (default 42:group/project)")
    ap.add_argument("--mr", action="append", type=int, default=[], help="merge request iid (all projects)")
    ap.add_argument("--commit", action="append", default=[], help="known commit sha (all projects)")
    ap.add_argument("--state", help="write the state as JSON to this file after every request")
    ap.add_argument("--deployments", help="JSON file of deployments kept across runs (loaded at start, "
                                          "rewritten on each new deployment)")
    ap.add_argument("--pipeline-variables-role", choices=["developer", "maintainer", "owner", "no_one_allowed"],
                    help="every project's ci_pipeline_variables_minimum_override_role (default developer)")
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        ap.error("the fake only listens on loopback")
    projects = {}
    for spec in args.project or ["42:group/project"]:
        pid, _, path = spec.partition(":")
        projects[int(pid)] = {"path": path or f"group/p{pid}", "mrs": args.mr, "commits": args.commit}
    tokens: dict[str, dict[str, Any]] = {}
    for t in args.token:
        tokens[t] = {"kind": "private", "scopes": ["api"], "role": "maintainer"}
    for t in args.developer_token:
        tokens[t] = {"kind": "private", "scopes": ["api"], "role": "developer"}
    for t in args.read_token:
        tokens[t] = {"kind": "private", "scopes": ["read_api"], "role": "maintainer"}
    for t in args.job_token:
        tokens[t] = {"kind": "job", "scopes": ["api"], "role": "developer"}
    fake = FakeGitLab(tokens=tokens, projects=projects, state_file=args.state)
    url = fake.start(args.host, args.port)
    from .deployments import Deployments

    fake.area(Deployments).load(args.deployments)
    if args.pipeline_variables_role:
        for project in fake.projects.values():
            project["settings"]["ci_pipeline_variables_minimum_override_role"] = args.pipeline_variables_role
    if args.state:
        fake._write_state()
    print(json.dumps({"url": url, "api_url": fake.api_url, "port": fake.server.server_address[1]}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    fake.stop()
    return 0
