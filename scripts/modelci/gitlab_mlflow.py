"""GitLab's MLflow-compatible API (model experiments and the Model Registry), spoken over plain REST.

GitLab serves the MLflow REST API at `<api>/projects/:id/ml/mlflow/api/2.0/mlflow/...` and stores the
files of a model version as an `ml_model` package: `PUT/GET <api>/projects/:id/packages/ml_models/
:model_version_id/files/:file_name`. Why REST and not the `mlflow` client: docs/model-registry.md
("Client choice"). Only calls GitLab documents as supported are used (docs/model-registry.md, "Which
MLflow calls"), with GitLab's caveats:
  - a model version's semver is given by the tag `gitlab.version` at creation; GitLab answers with
    `version` = the model version's numeric id (used in the package file URLs) and `aliases` = [semver];
  - every model version is also a run (its `run_id`), which takes params, metrics and tags;
  - a param or tag can be set once per run (a second set of the same key is refused), metrics repeat;
  - `gitlab.CI_JOB_ID` on a run links it to that CI job.
The token (MODELCI_GITLAB_TOKEN, `api` scope, Developer role) goes in `Authorization: Bearer`, as the
MLflow client sends MLFLOW_TRACKING_TOKEN. Transient failures are retried like every GitLab call
(gitlab_api.RetryPolicy); every other failure is one ModelCIError line.
"""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import requests

from . import log
from .errors import ModelCIError
from .gitlab_api import RETRY_STATUSES, GitLabClient

PREFIX = "/api/2.0/mlflow"


class MlflowAPI:
    def __init__(self, client: GitLabClient):
        if client.token_kind == "job":
            raise ModelCIError("environment: MODELCI_GITLAB_TOKEN: not set (CI_JOB_TOKEN cannot use GitLab's "
                               "model registry and experiments); set it to a project access token with the "
                               "`api` scope and the Developer role")
        token = getattr(client.gl, "private_token", None) or getattr(client.gl, "oauth_token", None)
        if not token:
            raise ModelCIError("environment: MODELCI_GITLAB_TOKEN: no token for GitLab's MLflow API; set it "
                               "to a project access token with the `api` scope")
        self.client = client
        self.retry = client.retry
        project = quote(str(client.project_id), safe="")
        self.project_url = f"{client.api_url}/projects/{project}"
        self.tracking_uri = f"{self.project_url}/ml/mlflow"
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": "modelci"})
        self.timeout = 60.0

    # ---- transport --------------------------------------------------------------------------------
    def _request(self, method: str, url: str, action: str, **kw: Any) -> requests.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self.session.request(method, url, timeout=self.timeout, **kw)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self.retry.attempts:
                    raise ModelCIError(f"GitLab {self.client.url}: cannot reach it while {action} after "
                                       f"{attempt} attempts ({exc.__class__.__name__}); check CI_API_V4_URL "
                                       "and that GitLab is up") from None
                delay = self.retry.wait(attempt)
            else:
                if resp.status_code not in RETRY_STATUSES or attempt >= self.retry.attempts:
                    return resp
                delay = self.retry.wait(attempt, resp.headers.get("Retry-After")
                                        if resp.status_code == 429 else None)
                log.warn(f"GitLab {method} {url.split('/api/v4', 1)[-1]}: HTTP {resp.status_code}; retry "
                         f"{attempt}/{self.retry.attempts - 1} in {delay:.2f}s")
            time.sleep(delay)

    def _fail(self, resp: requests.Response, action: str) -> ModelCIError:
        code = resp.status_code
        try:
            body = resp.json()
        except ValueError:
            body = {}
        detail = str(body.get("message") or body.get("error_code") or body.get("error") or "").replace("\n", " ")
        where = f"GitLab {self.client.url}"
        if code == 401:
            msg = (f"{where}: 401 while {action}: GitLab rejected the token in {self.client.token_source} "
                   "(expired or revoked, or its user lacks the Developer role needed to write models and "
                   "experiments); use a project access token with the `api` scope and the Developer role")
        elif code == 403:
            msg = (f"{where}: 403 while {action}: the token in {self.client.token_source} lacks the `api` scope "
                   "(read_api cannot write); create a token with the `api` scope")
        elif code == 404 and not detail:
            msg = (f"{where}: 404 while {action}: project {self.client.project_id!r} is not visible to the token, "
                   "or this GitLab has no Model Registry (GitLab >= 17.6, any tier); check CI_PROJECT_ID or "
                   "set the model_registry input to `generic`")
        else:
            msg = f"{where}: {code} while {action}: {detail[:200] or 'no detail'}"
        return ModelCIError(log.mask(msg))

    def call(self, method: str, endpoint: str, action: str, *, params: dict[str, Any] | None = None,
             body: dict[str, Any] | None = None, missing_ok: bool = False) -> dict[str, Any] | None:
        """One MLflow REST call; with missing_ok, RESOURCE_DOES_NOT_EXIST answers None."""
        resp = self._request(method, f"{self.tracking_uri}{PREFIX}/{endpoint}", action, params=params, json=body)
        if resp.status_code == 404 and missing_ok:
            try:
                if resp.json().get("error_code") == "RESOURCE_DOES_NOT_EXIST":
                    return None
            except ValueError:
                pass
        if resp.status_code >= 400:
            raise self._fail(resp, action)
        try:
            data = resp.json() if resp.content else {}
        except ValueError:
            raise ModelCIError(f"GitLab {self.client.url}: {endpoint} answered non-JSON while {action}") from None
        return data if isinstance(data, dict) else {}

    # ---- experiments and runs ---------------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        """The experiment's id, creating it when missing."""
        got = self.call("GET", "experiments/get-by-name", f"reading experiment {name!r}",
                        params={"experiment_name": name}, missing_ok=True)
        if got:
            return str(got["experiment"]["experiment_id"])
        made = self.call("POST", "experiments/create", f"creating experiment {name!r}", body={"name": name})
        return str((made or {})["experiment_id"])

    def search_runs(self, experiment_id: str, max_results: int = 1000) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        token = None
        while True:
            # GitLab takes one experiment id and orders by creation, newest first, by default
            body: dict[str, Any] = {"experiment_ids": [experiment_id], "max_results": max_results}
            if token:
                body["page_token"] = token
            page = self.call("POST", "runs/search", f"listing runs of experiment {experiment_id}", body=body) or {}
            runs.extend(page.get("runs") or [])
            token = page.get("next_page_token")
            if not token or len(runs) >= 5000:
                return runs

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> dict[str, Any]:
        body = {"experiment_id": experiment_id, "run_name": run_name, "start_time": int(time.time() * 1000),
                "tags": [{"key": k, "value": v} for k, v in tags.items()]}
        return (self.call("POST", "runs/create", f"creating run {run_name!r}", body=body) or {})["run"]

    def get_run(self, run_id: str) -> dict[str, Any]:
        return (self.call("GET", "runs/get", f"reading run {run_id}", params={"run_id": run_id}) or {})["run"]

    def log_batch(self, run_id: str, *, metrics: dict[str, float] | None = None,
                  params: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> None:
        now = int(time.time() * 1000)
        body = {"run_id": run_id,
                "metrics": [{"key": k, "value": float(v), "timestamp": now, "step": 0}
                            for k, v in (metrics or {}).items()],
                "params": [{"key": k, "value": str(v)} for k, v in (params or {}).items()],
                "tags": [{"key": k, "value": str(v)} for k, v in (tags or {}).items()]}
        if body["metrics"] or body["params"] or body["tags"]:
            self.call("POST", "runs/log-batch", f"logging to run {run_id}", body=body)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.call("POST", "runs/set-tag", f"tagging run {run_id} with {key}",
                  body={"run_id": run_id, "key": key, "value": value})

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.call("POST", "runs/update", f"ending run {run_id}",
                  body={"run_id": run_id, "status": status, "end_time": int(time.time() * 1000)})

    # ---- registered models and versions -----------------------------------------------------------
    def ensure_model(self, name: str, description: str = "") -> dict[str, Any]:
        got = self.call("GET", "registered-models/get", f"reading model {name!r}", params={"name": name},
                        missing_ok=True)
        if got:
            return dict(got["registered_model"])
        made = self.call("POST", "registered-models/create", f"creating model {name!r}",
                         body={"name": name, "description": description}) or {}
        return dict(made["registered_model"])

    def get_version(self, name: str, semver: str) -> dict[str, Any] | None:
        got = self.call("GET", "model-versions/get", f"reading {name} {semver}",
                        params={"name": name, "version": semver}, missing_ok=True)
        return dict(got["model_version"]) if got else None

    def create_version(self, name: str, semver: str, tags: dict[str, str], description: str) -> dict[str, Any]:
        body = {"name": name, "description": description,
                "tags": [{"key": "gitlab.version", "value": semver}]
                + [{"key": k, "value": v} for k, v in tags.items()]}
        return dict((self.call("POST", "model-versions/create", f"creating {name} {semver}", body=body)
                     or {})["model_version"])

    def latest_version(self, name: str) -> dict[str, Any] | None:
        got = self.call("POST", "registered-models/get-latest-versions", f"reading the latest version of {name}",
                        body={"name": name}, missing_ok=True)
        versions = [v for v in (got or {}).get("model_versions") or [] if v]
        return dict(versions[0]) if versions else None

    # ---- model version files (the ml_model package) -----------------------------------------------
    def _file_url(self, version_id: str, file_name: str) -> str:
        return f"{self.project_url}/packages/ml_models/{quote(str(version_id), safe='')}/files/{quote(file_name)}"

    def upload_file(self, version_id: str, file_name: str, data: bytes) -> None:
        action = f"uploading {file_name} to model version {version_id}"
        resp = self._request("PUT", self._file_url(version_id, file_name), action, data=data,
                             headers={"Content-Type": "application/octet-stream"})
        if resp.status_code >= 400:
            raise self._fail(resp, action)

    def download_file(self, version_id: str, file_name: str) -> bytes | None:
        action = f"downloading {file_name} of model version {version_id}"
        resp = self._request("GET", self._file_url(version_id, file_name), action)
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise self._fail(resp, action)
        return resp.content


def tags_of(entity: dict[str, Any]) -> dict[str, str]:
    """MLflow's [{key, value}] tag lists (a run's data.tags or a model version's tags) as a dict."""
    raw = entity.get("tags")
    if raw is None and isinstance(entity.get("data"), dict):
        raw = entity["data"].get("tags")
    return {str(t.get("key")): str(t.get("value")) for t in raw or [] if isinstance(t, dict)}


def run_data(run: dict[str, Any], field: str) -> dict[str, Any]:
    """A run's params or metrics as a dict (MLflow: data.params / data.metrics lists)."""
    items = (run.get("data") or {}).get(field) or []
    return {str(i.get("key")): i.get("value") for i in items if isinstance(i, dict)}
