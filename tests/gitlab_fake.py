"""A small, strict fake of the GitLab REST API (v4) for tests: see tests/fakegitlab/ (one module per
API area). This file is the entry point: the `fake_gitlab` pytest fixture (`pytest_plugins =
["gitlab_fake"]`) and the command line tools/localci.py starts:

  python tests/gitlab_fake.py --port 0 --token glpat-xyz --job-token jobtok --project 42:group/project \
      --mr 7 --commit <sha> --state /tmp/fake-state.json
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script from anywhere

from fakegitlab import FakeGitLab, HTTPError, Request, main  # noqa: E402

__all__ = ["FakeGitLab", "HTTPError", "Request", "fake_gitlab", "main"]


# ---- pytest fixture (import it into a test module: `from gitlab_fake import fake_gitlab`) ----------
try:
    import pytest

    @pytest.fixture
    def fake_gitlab(monkeypatch: Any) -> Any:
        """A running fake with project 42 (group/project), MR !7, one commit, and tokens:
        glpat-test-api-token (api), glpat-read-only (read_api), glpat-pkg (write_package_registry),
        job token job-token-123. The env points modelci at it with the api token."""
        fake = FakeGitLab(projects={42: {"path": "group/project", "mrs": [7], "commits": ["c0ffee" * 6 + "abcd"]}})
        fake.add_token("glpat-read-only", scopes=["read_api"])
        fake.add_token("glpat-pkg", scopes=["write_package_registry", "read_package_registry"])
        fake.add_token("glpat-reporter", scopes=["api"], role="reporter")
        fake.add_token("glpat-other-project", scopes=["api"], projects=[999])
        fake.add_token("job-token-123", kind="job", role="developer")
        fake.start()
        for var in ("MODELCI_GITLAB_URL", "MODELCI_GITLAB_PROJECT", "MODELCI_GITLAB_TOKEN", "GITLAB_TOKEN",
                    "CI_JOB_TOKEN", "CI_SERVER_URL", "CI_MERGE_REQUEST_IID", "CI_COMMIT_SHA"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("CI_API_V4_URL", fake.api_url)
        monkeypatch.setenv("CI_PROJECT_ID", "42")
        monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-test-api-token")
        monkeypatch.setenv("MODELCI_GITLAB_BACKOFF", "0.01")
        monkeypatch.setenv("MODELCI_GITLAB_MAX_WAIT", "0.05")
        yield fake
        fake.stop()
except ImportError:  # pragma: no cover - standalone use without pytest
    pass


if __name__ == "__main__":
    sys.exit(main())
