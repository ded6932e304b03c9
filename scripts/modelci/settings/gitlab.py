"""How modelci reaches the GitLab API (modelci.gitlab_api): URL, project, token and retry tuning."""
from __future__ import annotations

from . import var

_USERS = ("report", "monitor", "setup", "build", "gate", "registry", "publish")

GITLAB_URL = var("MODELCI_GITLAB_URL", "GitLab URL (https://gitlab.example.com or .../api/v4); default "
                 "CI_API_V4_URL, else CI_SERVER_URL.", kind="url", used_by=_USERS)
GITLAB_PROJECT = var("MODELCI_GITLAB_PROJECT", "Project id or group/project path; default CI_PROJECT_ID.",
                     used_by=_USERS)
GITLAB_TOKEN = var("MODELCI_GITLAB_TOKEN", "GitLab token (project access token with the scope the command "
                   "names, e.g. api); else GITLAB_TOKEN, else CI_JOB_TOKEN. Environment-scoped to the "
                   "jobs that write to GitLab; never printed.", kind="secret", used_by=_USERS, secret=True)
GITLAB_TOKEN_TYPE = var("MODELCI_GITLAB_TOKEN_TYPE", "private (PRIVATE-TOKEN header) or oauth (Authorization: "
                        "Bearer).", "private", used_by=_USERS)
GITLAB_TIMEOUT = var("MODELCI_GITLAB_TIMEOUT", "Seconds per GitLab API request.", "30", kind="float",
                     used_by=_USERS)
GITLAB_RETRIES = var("MODELCI_GITLAB_RETRIES", "Attempts per GitLab API request (429/5xx/connection "
                     "errors are retried).", "5", kind="int", used_by=_USERS)
GITLAB_BACKOFF = var("MODELCI_GITLAB_BACKOFF", "First wait between retries in seconds, doubling.", "0.5",
                     kind="float", used_by=_USERS)
GITLAB_MAX_WAIT = var("MODELCI_GITLAB_MAX_WAIT", "Longest single wait between retries in seconds (also "
                      "caps Retry-After).", "30", kind="float", used_by=_USERS)
