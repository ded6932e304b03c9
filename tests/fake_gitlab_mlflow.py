"""GitLab's side of its MLflow-compatible API, for the fake GitLab: forwards to a REAL MLflow server.

GitLab serves `/api/v4/projects/:id/ml/mlflow/api/2.0/mlflow/...` and stores model version files as
`ml_model` packages (`/api/v4/projects/:id/packages/ml_models/:model_version_id/files/:file`). This
module answers those routes for tests/gitlab_fake.py by forwarding the MLflow calls to a real
`mlflow server` (tests/mlflow_server.py starts one per test session) and adding what is GitLab's own,
as GitLab's docs ("MLflow client compatibility", "Model registry", the model registry API) describe
it. Where GitLab and MLflow differ, this follows GitLab:

  - auth: the fake GitLab's tokens (PRIVATE-TOKEN or `Authorization: Bearer`, as the MLflow client
    sends MLFLOW_TRACKING_TOKEN); no token or an unknown one 401, CI_JOB_TOKEN 401, read_api writing
    403 insufficient_scope, a role below Developer writing 401 (GitLab's `unauthorized!`), a project
    the token cannot see 404;
  - only the documented calls (SUPPORTED below); any other MLflow endpoint 404;
  - model versions are semver, given by the tag `gitlab.version` at creation (else the next patch);
    not semver 400; an existing version 400. The answer's `version` is GitLab's model version id and
    `aliases` = [semver]; `get` takes the semver. Every model version has its own run (candidate) in
    the model's experiment `[model]<name>`, created with the model; `run_id`/`source` are ignored;
  - a param, or a tag, is set once per run: a second log-parameter/set-tag of a key is 400, log-batch
    ignores keys already set; `gitlab.CI_JOB_ID` must name a job (an integer id) or the call is 400;
  - `get-latest-versions` answers the highest semver; registered model tags are ignored;
  - a run's `artifact_uri` points at the package files API (model version runs: the version's id;
    other runs: `candidate:<run id>`), where files are PUT and GET (stored in this module's store).

Names are namespaced on the MLflow side (one MLflow server serves the whole test session): a GitLab
model `wine` of project 1217 is `<namespace>--1217--wine` in MLflow. `mlflow_name()` gives the
mapping for tests that inspect the MLflow server directly.

Configuration: attach(fake, mlflow_url, store, namespace), else the environment: FAKE_GITLAB_MLFLOW_URL,
FAKE_GITLAB_MLFLOW_STORE (files and the id map), FAKE_GITLAB_MLFLOW_NAMESPACE. Fakes that write their
state file in the same directory (the per-pipeline fakes of one e2e scenario) share a namespace
(namespace_for()), so they are one GitLab across pipelines; any other fake gets a new namespace.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import requests

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
WRITE_SCOPES = {"api"}
READ_SCOPES = {"api", "read_api"}

# (method, endpoint) GitLab documents as supported (docs: "Supported MLflow client methods and caveats")
SUPPORTED = {
    ("POST", "experiments/create"), ("GET", "experiments/get"), ("GET", "experiments/get-by-name"),
    ("POST", "experiments/delete"), ("POST", "experiments/set-experiment-tag"),
    ("POST", "runs/create"), ("GET", "runs/get"), ("POST", "runs/delete"), ("POST", "runs/search"),
    ("POST", "runs/log-batch"), ("POST", "runs/log-metric"), ("POST", "runs/log-parameter"),
    ("POST", "runs/set-tag"), ("POST", "runs/update"),
    ("POST", "registered-models/create"), ("GET", "registered-models/get"),
    ("DELETE", "registered-models/delete"), ("PATCH", "registered-models/update"),
    ("POST", "registered-models/get-latest-versions"),
    ("POST", "model-versions/create"), ("GET", "model-versions/get"), ("PATCH", "model-versions/update"),
}


def namespace_for(state_file: str | os.PathLike[str]) -> str:
    return "ns" + hashlib.sha256(os.path.dirname(os.path.abspath(state_file)).encode()).hexdigest()[:10]


def mlflow_name(namespace: str, project_id: int | str, name: str) -> str:
    return f"{namespace}--{project_id}--{name}"


def semver_key(v: str) -> tuple[int, int, int]:
    m = SEMVER.match(v)
    return (int(m[1]), int(m[2]), int(m[3])) if m else (-1, -1, -1)


class GitLabMlflow:
    def __init__(self, fake: Any, mlflow_url: str, store: str | os.PathLike[str], namespace: str):
        # the fake's own module (it may run as __main__): its error type and roles
        fake_module = sys.modules[type(fake).__module__]
        self.HTTPError = fake_module.HTTPError
        self.roles = fake_module.ROLES
        self.fake = fake
        self.mlflow = mlflow_url.rstrip("/")
        self.store = Path(store)
        self.store.mkdir(parents=True, exist_ok=True)
        self.ns = namespace
        self.state_file = self.store / f"gitlab-ml-{namespace}.json"
        self.state: dict[str, Any] = {"next_id": 1, "versions": {}, "files": {}}
        if self.state_file.exists():
            self.state = json.loads(self.state_file.read_text())
        self.http = requests.Session()
        self.calls: list[tuple[str, str, int]] = []  # (method, endpoint, status) as answered

    # ---- plumbing ---------------------------------------------------------------------------------
    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        os.replace(tmp, self.state_file)

    def _error(self, status: int, code: str, message: str = "") -> Exception:
        body = {"error_code": code}
        if message:
            body["message"] = message
        return self.HTTPError(status, body)

    def _auth(self, req: Any, entry: dict[str, Any], pid: str, write: bool) -> dict[str, Any]:
        # the fake's shared helpers (`auth`/`find_project` in the fakegitlab package, `_auth`/`_project` before)
        auth = getattr(self.fake, "auth", None) or self.fake._auth
        find_project = getattr(self.fake, "find_project", None) or self.fake._project
        info = auth(req, entry, WRITE_SCOPES if write else READ_SCOPES)
        project = find_project(pid, dict(info, role_ok=True))
        if write and self.roles.get(info.get("role", "maintainer"), 0) < self.roles["developer"]:
            raise self.HTTPError(401, {"message": "401 Unauthorized"})
        return project

    def _forward(self, method: str, endpoint: str, *, params: dict[str, Any] | None = None,
                 body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        url = f"{self.mlflow}/api/2.0/mlflow/{endpoint}"
        resp = self.http.request(method, url, params=params, json=body, timeout=60)
        try:
            data = resp.json() if resp.content else {}
        except ValueError:
            data = {"error_code": "INTERNAL_ERROR", "message": resp.text[:200]}
        return resp.status_code, data

    def _must(self, method: str, endpoint: str, **kw: Any) -> dict[str, Any]:
        status, data = self._forward(method, endpoint, **kw)
        if status >= 400:
            raise self.HTTPError(status, data)
        return data

    def _to_ml(self, pid: int, name: str) -> str:
        return mlflow_name(self.ns, pid, name)

    def _from_ml(self, value: Any, pid: int) -> Any:
        """Strip the namespace from every name in an MLflow answer."""
        prefix = mlflow_name(self.ns, pid, "")
        if isinstance(value, dict):
            return {k: (v.removeprefix(prefix) if k in ("name", "experiment_name") and isinstance(v, str)
                        else self._from_ml(v, pid)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._from_ml(v, pid) for v in value]
        return value

    def _tags_ok(self, tags: list[dict[str, Any]]) -> None:
        for t in tags:
            if t.get("key") == "gitlab.CI_JOB_ID" and not str(t.get("value", "")).isdigit():
                raise self._error(400, "INVALID_PARAMETER_VALUE", "gitlab.CI_JOB_ID must refer to an existing build")

    def _run(self, run_id: str) -> dict[str, Any]:
        return self._must("GET", "runs/get", params={"run_id": run_id})["run"]

    def _versions(self, pid: int, name: str) -> list[dict[str, Any]]:
        return [v for v in self.state["versions"].values() if v["project"] == pid and v["name"] == name]

    def _version_json(self, v: dict[str, Any], project: dict[str, Any]) -> dict[str, Any]:
        ml = self._must("GET", "model-versions/get", params={"name": self._to_ml(v["project"], v["name"]),
                                                              "version": v["mlflow_version"]})["model_version"]
        return {"name": v["name"], "version": str(v["id"]), "creation_timestamp": ml.get("creation_timestamp"),
                "last_updated_timestamp": ml.get("last_updated_timestamp"), "user_id": None,
                "current_stage": "development", "description": ml.get("description", ""),
                "source": f"{self.fake.url}/{project['path_with_namespace']}/-/ml/models/{v['name']}/versions/{v['id']}",
                "run_id": v["run_id"], "status": "READY", "status_message": "", "tags": ml.get("tags") or [],
                "run_link": "", "aliases": [v["semver"]]}

    # ---- routes -----------------------------------------------------------------------------------
    def mlflow_route(self, req: Any, entry: dict[str, Any], pid: str, endpoint: str) -> Any:
        write = req.method not in ("GET", "HEAD")
        project = self._auth(req, entry, pid, write)
        key = (req.method, endpoint)
        entry["mlflow"] = endpoint
        if key not in SUPPORTED:
            raise self.HTTPError(404, {"error": "404 Not Found"})
        p = project["id"]
        params = dict(req.query)
        body = req.json() if write else {}
        handler = getattr(self, "_" + endpoint.replace("/", "_").replace("-", "_"), None)
        if handler is not None:
            status, data = handler(p, project, params, body)
        else:
            status, data = self._forward(req.method, endpoint, params=params or None, body=body or None)
        self.calls.append((req.method, endpoint, status))
        if status >= 400:
            raise self.HTTPError(status, self._from_ml(data, p))
        return status, {}, self._from_ml(data, p)

    # experiments: names live in the project's namespace
    def _experiments_create(self, p: int, project: Any, params: Any, body: dict[str, Any]) -> Any:
        return self._forward("POST", "experiments/create", body={"name": self._to_ml(p, str(body.get("name"))),
                                                                  "tags": body.get("tags") or []})

    def _experiments_get_by_name(self, p: int, project: Any, params: dict[str, Any], body: Any) -> Any:
        return self._forward("GET", "experiments/get-by-name",
                             params={"experiment_name": self._to_ml(p, str(params.get("experiment_name", "")))})

    # runs: GitLab's rules for params and tags, and its artifact URIs
    def _runs_create(self, p: int, project: Any, params: Any, body: dict[str, Any]) -> Any:
        self._tags_ok(body.get("tags") or [])
        return self._forward("POST", "runs/create", body=body)

    def _runs_get(self, p: int, project: Any, params: dict[str, Any], body: Any) -> Any:
        status, data = self._forward("GET", "runs/get", params={"run_id": params.get("run_id", "")})
        if status == 200:
            run_id = data["run"]["info"]["run_id"]
            owner = next((v for v in self.state["versions"].values() if v["run_id"] == run_id), None)
            target = str(owner["id"]) if owner else f"candidate:{run_id}"
            data["run"]["info"]["artifact_uri"] = (f"{self.fake.api_url}/projects/{p}/packages/ml_models/"
                                                   f"{target}/files/")
        return status, data

    def _runs_log_parameter(self, p: int, project: Any, params: Any, body: dict[str, Any]) -> Any:
        have = {i["key"] for i in (self._run(str(body.get("run_id")))["data"].get("params") or [])}
        if body.get("key") in have:
            raise self._error(400, "INVALID_PARAMETER_VALUE", f"param {body.get('key')} has already been logged")
        return self._forward("POST", "runs/log-parameter", body=body)

    def _runs_set_tag(self, p: int, project: Any, params: Any, body: dict[str, Any]) -> Any:
        self._tags_ok([body])
        have = {i["key"] for i in (self._run(str(body.get("run_id")))["data"].get("tags") or [])}
        if body.get("key") in have:
            raise self._error(400, "INVALID_PARAMETER_VALUE", f"tag {body.get('key')} has already been set")
        return self._forward("POST", "runs/set-tag", body=body)

    def _runs_log_batch(self, p: int, project: Any, params: Any, body: dict[str, Any]) -> Any:
        self._tags_ok(body.get("tags") or [])
        data = self._run(str(body.get("run_id")))["data"]
        have_p = {i["key"] for i in data.get("params") or []}
        have_t = {i["key"] for i in data.get("tags") or []}
        body = dict(body, params=[i for i in body.get("params") or [] if i.get("key") not in have_p],
                    tags=[i for i in body.get("tags") or [] if i.get("key") not in have_t])
        return self._forward("POST", "runs/log-batch", body=body)

    def _runs_search(self, p: int, project: Any, params: Any, body: dict[str, Any]) -> Any:
        ids = body.get("experiment_ids") or []
        return self._forward("POST", "runs/search", body={
            "experiment_ids": ids[:1], "max_results": min(int(body.get("max_results") or 200), 1000),
            "order_by": ["attributes.start_time DESC"], **({"page_token": body["page_token"]}
                                                            if body.get("page_token") else {})})

    # registered models: each has the experiment `[model]<name>`; tags are ignored
    def _registered_models_create(self, p: int, project: Any, params: Any, body: dict[str, Any]) -> Any:
        name = str(body.get("name") or "")
        if not name:
            raise self._error(400, "INVALID_PARAMETER_VALUE", "name is missing")
        status, exp = self._forward("GET", "experiments/get-by-name", params={"experiment_name": self._to_ml(p, name)})
        if status == 200:
            raise self._error(400, "RESOURCE_ALREADY_EXISTS", "name cannot be the name of an existing experiment")
        status, data = self._forward("POST", "registered-models/create",
                                     body={"name": self._to_ml(p, name), "description": body.get("description", "")})
        if status == 200:
            self._forward("POST", "experiments/create", body={"name": self._to_ml(p, f"[model]{name}")})
        elif data.get("error_code") == "RESOURCE_ALREADY_EXISTS":
            return 400, {"error_code": "RESOURCE_ALREADY_EXISTS"}
        return status, data

    def _named(self, endpoint: str, method: str, p: int, values: dict[str, Any]) -> Any:
        values = dict(values, name=self._to_ml(p, str(values.get("name") or "")))
        if method == "GET":
            return self._forward(method, endpoint, params=values)
        return self._forward(method, endpoint, body=values)

    def _registered_models_get(self, p: int, project: Any, params: dict[str, Any], body: Any) -> Any:
        return self._named("registered-models/get", "GET", p, params)

    def _registered_models_update(self, p: int, project: Any, params: Any, body: dict[str, Any]) -> Any:
        return self._named("registered-models/update", "PATCH", p, body)

    def _registered_models_delete(self, p: int, project: Any, params: dict[str, Any], body: Any) -> Any:
        return self._named("registered-models/delete", "DELETE", p, params or body)

    def _registered_models_get_latest_versions(self, p: int, project: Any, params: Any, body: dict[str, Any]) -> Any:
        status, _ = self._named("registered-models/get", "GET", p, {"name": body.get("name")})
        if status != 200:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST"}
        versions = sorted(self._versions(p, str(body.get("name"))), key=lambda v: semver_key(v["semver"]))
        return 200, {"model_versions": [self._version_json(versions[-1], project)] if versions else []}

    # model versions: semver through gitlab.version, GitLab's ids, one run per version
    def _model_versions_create(self, p: int, project: Any, params: Any, body: dict[str, Any]) -> Any:
        name = str(body.get("name") or "")
        status, _ = self._named("registered-models/get", "GET", p, {"name": name})
        if status != 200:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST"}
        tags = [t for t in body.get("tags") or [] if isinstance(t, dict)]
        existing = self._versions(p, name)
        semver = next((str(t.get("value")) for t in tags if t.get("key") == "gitlab.version"), None)
        if semver is None:
            top = max((semver_key(v["semver"]) for v in existing), default=None)
            semver = f"{top[0]}.{top[1]}.{top[2] + 1}" if top else "1.0.0"
        if not SEMVER.match(semver):
            raise self._error(400, "INVALID_PARAMETER_VALUE", "Version must be semantic version")
        if any(v["semver"] == semver for v in existing):
            raise self._error(400, "INVALID_PARAMETER_VALUE", "Version has already been taken")
        exp = self._must("GET", "experiments/get-by-name",
                         params={"experiment_name": self._to_ml(p, f"[model]{name}")})["experiment"]["experiment_id"]
        run = self._must("POST", "runs/create", body={"experiment_id": exp, "run_name": f"{name} {semver}",
                                                      "tags": [{"key": "mlflow.runName", "value": f"{name} {semver}"}]})
        run_id = run["run"]["info"]["run_id"]
        ml = self._must("POST", "model-versions/create", body={
            "name": self._to_ml(p, name), "source": run["run"]["info"]["artifact_uri"], "run_id": run_id,
            "tags": tags, "description": body.get("description", "")})["model_version"]
        vid = self.state["next_id"]
        self.state["next_id"] = vid + 1
        self.state["versions"][str(vid)] = {"id": vid, "project": p, "name": name, "semver": semver,
                                            "mlflow_version": ml["version"], "run_id": run_id}
        self._save()
        return 200, {"model_version": self._version_json(self.state["versions"][str(vid)], project)}

    def _find_version(self, p: int, name: str, semver: str) -> dict[str, Any]:
        found = next((v for v in self._versions(p, name) if v["semver"] == semver), None)
        if not found:
            raise self._error(404, "RESOURCE_DOES_NOT_EXIST")
        return found

    def _model_versions_get(self, p: int, project: Any, params: dict[str, Any], body: Any) -> Any:
        v = self._find_version(p, str(params.get("name", "")), str(params.get("version", "")))
        return 200, {"model_version": self._version_json(v, project)}

    def _model_versions_update(self, p: int, project: Any, params: Any, body: dict[str, Any]) -> Any:
        if not (body.get("name") and body.get("version") and body.get("description") is not None):
            raise self._error(400, "INVALID_PARAMETER_VALUE")
        v = self._find_version(p, str(body["name"]), str(body["version"]))
        self._must("PATCH", "model-versions/update", body={"name": self._to_ml(p, v["name"]),
                                                           "version": v["mlflow_version"],
                                                           "description": body["description"]})
        return 200, {"model_version": self._version_json(v, project)}

    # ---- model version files: the ml_model package --------------------------------------------------
    def file_route(self, req: Any, entry: dict[str, Any], pid: str, mvid: str, path: str) -> Any:
        write = req.method == "PUT"
        project = self._auth(req, entry, pid, write)
        owner = self.state["versions"].get(mvid)
        if mvid.startswith("candidate:"):
            owner = {"project": project["id"]}
        if owner is None or owner["project"] != project["id"]:
            raise self.HTTPError(404, {"message": "404 Model version Not Found"})
        if ".." in path.split("/"):
            raise self.HTTPError(400, {"error": "file_name is invalid"})
        key = f"{project['id']}/{mvid}/{path}"
        target = self.store / "files" / self.ns / hashlib.sha256(key.encode()).hexdigest()
        if write:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(req.body)
            self.state["files"][key] = {"size": len(req.body), "sha256": hashlib.sha256(req.body).hexdigest()}
            self._save()
            return 201, {}, {"message": "201 Created"}
        if req.method != "GET":
            raise self.HTTPError(405, {"message": "405 Method Not Allowed"})
        if key not in self.state["files"]:
            raise self.HTTPError(404, {"message": "404 Package file Not Found"})
        return 200, {"Content-Type": "application/octet-stream"}, target.read_bytes()

    # ---- for tests --------------------------------------------------------------------------------
    def files_of(self, project_id: int, version_id: int | str) -> dict[str, dict[str, Any]]:
        prefix = f"{project_id}/{version_id}/"
        return {k[len(prefix):]: v for k, v in self.state["files"].items() if k.startswith(prefix)}


def routes(fake: Any, mlflow_url: str | None = None, store: str | os.PathLike[str] | None = None,
           namespace: str | None = None) -> list[tuple[str, dict[str, Any], str]]:
    """The routes (pattern under /api/v4, {method: handler}, name) for a FakeGitLab, and `fake.ml` (the
    GitLabMlflow answering them, or None without an MLflow server: then no routes, GitLab answers 404).
    The fake GitLab calls this while it sets up its routes (its `state_file` is known by then)."""
    mlflow_url = mlflow_url or os.environ.get("FAKE_GITLAB_MLFLOW_URL")
    fake.ml = None
    if not mlflow_url:
        return []
    store = store or os.environ.get("FAKE_GITLAB_MLFLOW_STORE") or os.path.join(os.getcwd(), ".fake-gitlab-ml")
    if namespace is None and getattr(fake, "state_file", None):
        # fakes that write their state next to each other (one per pipeline of one scenario) are one GitLab
        namespace = namespace_for(fake.state_file)
    namespace = namespace or os.environ.get("FAKE_GITLAB_MLFLOW_NAMESPACE") or "ns" + os.urandom(4).hex()
    ml = GitLabMlflow(fake, mlflow_url, store, namespace)
    fake.ml = ml
    every = {m: ml.mlflow_route for m in ("GET", "POST", "PATCH", "DELETE", "PUT")}
    return [(r"/projects/(?P<pid>[^/]+)/ml/mlflow/api/2\.0/mlflow/(?P<endpoint>[a-z-]+/[a-z-]+)", every, "mlflow"),
            (r"/projects/(?P<pid>[^/]+)/packages/ml_models/(?P<mvid>[^/]+)/files/(?P<path>.+)",
             {"PUT": ml.file_route, "GET": ml.file_route}, "ml_model_files")]


def attach(fake: Any, mlflow_url: str | None = None, store: str | os.PathLike[str] | None = None,
           namespace: str | None = None) -> GitLabMlflow | None:
    """Add the routes to a running FakeGitLab's table (see routes())."""
    for pattern, methods, name in routes(fake, mlflow_url, store, namespace):
        fake._route(pattern, methods, name)
    return fake.ml
