"""GitLab's MLflow-compatible API (model experiments and the Model Registry) and the model-version
file endpoints, forwarded to a real MLflow tracking server by tests/fake_gitlab_mlflow.py (only when
FAKE_GITLAB_MLFLOW_URL names one; otherwise these routes do not exist and GitLab answers 404)."""
from __future__ import annotations

from typing import Any

from .base import Area, Route


class MLflow(Area):
    def __init__(self, fake: Any):
        super().__init__(fake)
        fake.ml = None

    def routes(self) -> list[Route]:
        import fake_gitlab_mlflow

        return fake_gitlab_mlflow.routes(self.fake)
