"""The GitLab API as modelci uses it: python-gitlab, configured from the CI environment.

  client = gitlab_api.from_env()
  with client.errors("uploading the model", scope=gitlab_api.SCOPE_PACKAGES_WRITE):
      client.project.generic_packages.upload(...)

Environment (first set wins):
  URL      MODELCI_GITLAB_URL, CI_API_V4_URL (…/api/v4), CI_SERVER_URL
  project  MODELCI_GITLAB_PROJECT, CI_PROJECT_ID   (numeric id or group/project path)
  token    MODELCI_GITLAB_TOKEN, GITLAB_TOKEN (sent as PRIVATE-TOKEN), CI_JOB_TOKEN (sent as JOB-TOKEN)
           MODELCI_GITLAB_TOKEN_TYPE=oauth sends the token as "Authorization: Bearer".
  tuning   MODELCI_GITLAB_TIMEOUT (s, default 30), MODELCI_GITLAB_RETRIES (attempts, default 5),
           MODELCI_GITLAB_BACKOFF (first wait in s, default 0.5, doubling), MODELCI_GITLAB_MAX_WAIT
           (cap on any single wait incl. Retry-After, default 30).

Transient failures (connection errors, timeouts, 408, 429, 5xx) are retried with bounded exponential
backoff (429 waits for Retry-After, capped). Everything else fails at once, and every failure becomes a
one-line ModelCIError naming the token scope or project that is wrong: never a silent pass.
CI_JOB_TOKEN can use the package registry but not notes or uploads; those need a project/personal
access token with the `api` scope in MODELCI_GITLAB_TOKEN.
"""
from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from . import log, settings
from .errors import ModelCIError
from .settings import gitlab as _declared  # noqa: F401  (declares the MODELCI_GITLAB_* variables)

SCOPE_API = "api"
SCOPE_READ_API = "read_api"
SCOPE_PACKAGES_WRITE = "write_package_registry"
SCOPE_PACKAGES_READ = "read_package_registry"

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504} | set(range(520, 531)))


@dataclass
class RetryPolicy:
    attempts: int = 5        # total attempts per request (1 = no retry)
    backoff: float = 0.5     # first wait; doubles each retry
    max_wait: float = 30.0   # cap on a single wait (also caps Retry-After)
    log_prefix: str = "GitLab"

    def wait(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        delay = self.backoff * (2 ** (attempt - 1))
        if retry_after:
            parsed = _parse_retry_after(retry_after)
            if parsed is not None:
                delay = parsed
        return max(0.0, min(delay, self.max_wait))


def _parse_retry_after(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _make_backend(policy: RetryPolicy) -> type:
    """A python-gitlab backend whose every HTTP request is retried per `policy`."""
    from gitlab._backends import RequestsBackend
    from requests_toolbelt.multipart.encoder import MultipartEncoder

    class RetryingBackend(RequestsBackend):  # type: ignore[misc]
        retry = policy
        last_attempts = 0

        def http_request(self, method: str, url: str, json: Any = None, data: Any = None,
                         params: Any = None, timeout: float | None = None, verify: Any = True,
                         stream: bool | None = False, **kwargs: Any) -> Any:
            if isinstance(data, MultipartEncoder):
                data = data.to_string()  # a stream can be sent once; bytes can be re-sent on retry
            path = urlsplit(url).path
            attempt = 0
            while True:
                attempt += 1
                type(self).last_attempts = attempt
                try:
                    result = super().http_request(method, url, json=json, data=data, params=params,
                                                  timeout=timeout, verify=verify, stream=stream, **kwargs)
                except (requests.ConnectionError, requests.Timeout,
                        requests.exceptions.ChunkedEncodingError) as exc:
                    if attempt >= self.retry.attempts:
                        raise
                    delay = self.retry.wait(attempt)
                    log.warn(f"{self.retry.log_prefix} {method.upper()} {path}: {exc.__class__.__name__}; "
                             f"retry {attempt}/{self.retry.attempts - 1} in {delay:.2f}s")
                    time.sleep(delay)
                    continue
                if result.status_code not in RETRY_STATUSES or attempt >= self.retry.attempts:
                    return result
                delay = self.retry.wait(attempt, result.headers.get("Retry-After")
                                        if result.status_code == 429 else None)
                log.warn(f"{self.retry.log_prefix} {method.upper()} {path}: HTTP {result.status_code}; "
                         f"retry {attempt}/{self.retry.attempts - 1} in {delay:.2f}s")
                result.response.close()
                time.sleep(delay)

    return RetryingBackend


def _gitlab_class() -> type:
    import gitlab

    class Gitlab(gitlab.Gitlab):  # type: ignore[misc]
        def http_request(self, verb: str, path: str, *args: Any, **kwargs: Any) -> Any:
            # retries live in the backend (with Retry-After and a cap); python-gitlab must not add its own
            kwargs["obey_rate_limit"] = False
            kwargs["retry_transient_errors"] = False
            return super().http_request(verb, path, *args, **kwargs)

    return Gitlab


@dataclass
class GitLabClient:
    gl: Any                      # gitlab.Gitlab
    url: str                     # server base URL (without /api/v4)
    project_id: str
    token_source: str            # env var the token came from
    token_kind: str              # private | job | oauth
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def project(self) -> Any:
        """The project, lazily (no request until an API call needs it)."""
        return self.gl.projects.get(self.project_id, lazy=True)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v4"

    @contextmanager
    def errors(self, action: str, scope: str = SCOPE_API) -> Iterator[None]:
        """Turn any python-gitlab/requests failure inside into a one-line ModelCIError."""
        import gitlab.exceptions as gexc

        try:
            yield
        except gexc.GitlabError as exc:
            raise ModelCIError(log.mask(self.explain(exc, action, scope))) from None
        except requests.RequestException as exc:
            raise ModelCIError(log.mask(
                f"GitLab {self.url}: cannot reach it while {action} after {self.retry.attempts} attempts "
                f"({exc.__class__.__name__}); check CI_API_V4_URL/CI_SERVER_URL and that GitLab is up"
            )) from None

    def explain(self, exc: Any, action: str, scope: str) -> str:
        code = getattr(exc, "response_code", None)
        message = str(getattr(exc, "error_message", "") or "")
        if isinstance(getattr(exc, "error_message", None), bytes):
            message = exc.error_message.decode(errors="replace")
        message = message.strip().replace("\n", " ")[:200]
        where = f"GitLab {self.url}"
        who = f"the token in {self.token_source}"
        if code == 401:
            hint = (" (CI_JOB_TOKEN cannot be used for this endpoint)" if self.token_kind == "job" else
                    " (expired, revoked or mistyped)")
            return (f"{where}: 401 Unauthorized while {action}: GitLab rejected {who}{hint}; set "
                    f"MODELCI_GITLAB_TOKEN to a project or personal access token with the `{scope}` scope")
        if code == 403:
            if "insufficient_scope" in message or "scope" in message.lower():
                return (f"{where}: 403 insufficient_scope while {action}: {who} lacks the `{scope}` scope; "
                        f"create a token with the `{scope}` scope and put it in MODELCI_GITLAB_TOKEN")
            return (f"{where}: 403 Forbidden while {action} in project {self.project_id}: {who} belongs to a "
                    f"user or bot without enough permission (needs the Developer role or higher, and the "
                    f"`{scope}` scope); grant the role or use another token")
        if code == 404:
            if not message or "project" in message.lower():
                return (f"{where}: 404 while {action}: project {self.project_id!r} does not exist or is not "
                        f"visible to {who}; check CI_PROJECT_ID/MODELCI_GITLAB_PROJECT and that the token "
                        f"(scope `{scope}`) belongs to a member of the project")
            return (f"{where}: 404 while {action} in project {self.project_id}: {message}; check the "
                    f"merge request / commit / package it names")
        if code in RETRY_STATUSES:
            return (f"{where}: still answering {code} ({message or 'no detail'}) while {action} after "
                    f"{self.retry.attempts} attempts; GitLab is unavailable or rate-limiting, retry the "
                    f"job later")
        if code is None:
            return f"{where}: {action} failed: {exc}"
        return f"{where}: {code} while {action}: {message or 'no detail'}"


def _env_int(name: str) -> int:
    value = settings.get(name)
    try:
        return int(str(value))
    except ValueError:
        raise ModelCIError(f"environment: {name}: expected an integer, got {value!r}") from None


def _env_float(name: str) -> float:
    value = settings.get(name)
    try:
        return float(str(value))
    except ValueError:
        raise ModelCIError(f"environment: {name}: expected a number, got {value!r}") from None


def server_url_from_env(url: str | None = None) -> str:
    url = url or settings.get("MODELCI_GITLAB_URL") or settings.env("CI_API_V4_URL") or settings.env("CI_SERVER_URL")
    if not url:
        raise ModelCIError("environment: CI_API_V4_URL/CI_SERVER_URL: not set, so the GitLab API is unknown; "
                           "run in GitLab CI or set MODELCI_GITLAB_URL (e.g. https://gitlab.example.com)")
    url = url.rstrip("/")
    url = url.removesuffix("/api/v4")
    if urlsplit(url).scheme not in ("http", "https"):
        raise ModelCIError(f"environment: GitLab URL {url!r} is not http(s); set CI_API_V4_URL or "
                           "MODELCI_GITLAB_URL to e.g. https://gitlab.example.com/api/v4")
    return url


def from_env(*, scope: str = SCOPE_API, url: str | None = None, project: str | None = None,
             token: tuple[str, str] | None = None) -> GitLabClient:
    """A client for the project this pipeline runs in. `scope` only shapes the error messages.
    `url`, `project` and `token` ((source name, value), e.g. from `modelci setup --token-env`) override
    the environment."""
    url = server_url_from_env(url)
    project = project or settings.get("MODELCI_GITLAB_PROJECT") or settings.env("CI_PROJECT_ID")
    if not project:
        raise ModelCIError("environment: CI_PROJECT_ID: not set; run in GitLab CI or set "
                           "MODELCI_GITLAB_PROJECT to the project id or group/project path")
    candidates: list[tuple[str, str | None]] = [token] if token is not None else [
        ("MODELCI_GITLAB_TOKEN", settings.get("MODELCI_GITLAB_TOKEN")),
        ("GITLAB_TOKEN", settings.env("GITLAB_TOKEN")), ("CI_JOB_TOKEN", settings.env("CI_JOB_TOKEN"))]
    source, secret = next(((n, v) for n, v in candidates if v), ("", None))
    if not secret:
        raise ModelCIError(f"environment: MODELCI_GITLAB_TOKEN: no GitLab token (nor GITLAB_TOKEN or "
                           f"CI_JOB_TOKEN); set it to a project access token with the `{scope}` scope")
    log.add_secret(secret)
    kind = "job" if source == "CI_JOB_TOKEN" else (
        "oauth" if (settings.get("MODELCI_GITLAB_TOKEN_TYPE") or "").lower() in ("oauth", "bearer") else "private")
    policy = RetryPolicy(attempts=max(1, _env_int("MODELCI_GITLAB_RETRIES")),
                         backoff=max(0.0, _env_float("MODELCI_GITLAB_BACKOFF")),
                         max_wait=max(0.0, _env_float("MODELCI_GITLAB_MAX_WAIT")))
    auth = {"job": {"job_token": secret}, "oauth": {"oauth_token": secret}}.get(kind, {"private_token": secret})
    gl = _gitlab_class()(url, timeout=_env_float("MODELCI_GITLAB_TIMEOUT"),
                         backend=_make_backend(policy), user_agent="modelci", **auth)
    return GitLabClient(gl=gl, url=url, project_id=project, token_source=source, token_kind=kind,
                        retry=policy)
