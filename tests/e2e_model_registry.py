"""Assertions on GitLab's Model Registry and model experiments after the end-to-end scenario
(tests/test_e2e_pipeline.py): what the real MLflow server behind the fake GitLab holds, and a
`registry pull` of a version through the fake GitLab's API."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

PROJECT = 1217
RUN_ID = re.compile(r'"run_id": "(\d{8}T\d{6}Z-[0-9a-f]{8})"')
FILES = ["model.joblib", "model.json", "run.json", "smoke.json", "verdict.json"]


def _tags(entity: dict[str, Any]) -> dict[str, str]:
    raw = entity.get("tags") if "tags" in entity else (entity.get("data") or {}).get("tags")
    return {t["key"]: t["value"] for t in raw or []}


def check(scenario: dict[str, Any], mlflow_server: Any, tmp_path: Path) -> None:
    from fake_gitlab_mlflow import attach, mlflow_name, namespace_for

    repo = scenario["repo"]
    ns = namespace_for(repo.parent / "gitlab-A.json")
    exp = mlflow_server.get("experiments/get-by-name", experiment_name=mlflow_name(ns, PROJECT, "[model]wine"))
    assert "experiment" in exp, exp
    runs = mlflow_server.post("runs/search", {"experiment_ids": [exp["experiment"]["experiment_id"]],
                                              "max_results": 1000})["runs"]
    state = json.loads((Path(mlflow_server.store) / f"gitlab-ml-{ns}.json").read_text())
    versions = sorted((v for v in state["versions"].values() if v["project"] == PROJECT and v["name"] == "wine"),
                      key=lambda v: v["semver"])
    # one model version per new model: pipeline A (1.0.0) and B (1.1.0); none for the app-only
    # rebuild (1.1.1), the rejected model (F) or the corrupt data (E)
    assert [v["semver"] for v in versions] == ["1.0.0", "1.1.0"], versions
    version_runs = {v["run_id"] for v in versions}
    training = [r for r in runs if r["info"]["run_id"] not in version_runs]
    # one run per training: the run ids the train jobs of A, B and F printed (a model reused from the
    # cache keeps its run id); E failed before a model existed
    trained = {k: set(RUN_ID.findall(scenario[k].output)) for k in ("A", "B", "F")}
    logged = [_tags(r).get("modelci.run_id") for r in training]
    assert sorted(logged) == sorted(set().union(*trained.values())), (logged, trained)
    for run_id in trained["F"] - trained["B"] - trained["A"]:  # a fresh training the gate rejected
        assert _tags(next(r for r in training if _tags(r)["modelci.run_id"] == run_id))["modelci.verdict"] == "REJECT"
    for r in training:
        t = _tags(r)
        assert t["gitlab.CI_JOB_ID"].isdigit() and t["modelci.data_sha256"] and t["modelci.commit"], t
        assert {m["key"] for m in r["data"]["metrics"]} >= {"accuracy"}, r["data"]["metrics"]
        assert any(p["key"].startswith("estimator.") for p in r["data"]["params"]), r["data"]["params"]
    lineage_b = scenario["lineage_B"]["staging"]
    for v in versions:
        run = next(r for r in runs if r["info"]["run_id"] == v["run_id"])
        t = _tags(run)
        assert t["modelci.published"] == "true" and t["gitlab.CI_JOB_ID"].isdigit(), t
        assert t["modelci.image_digest"].startswith("sha256:"), t
        assert {m["key"] for m in run["data"]["metrics"]} >= {"accuracy"}
        prefix = f"{PROJECT}/{v['id']}/"
        assert sorted(k[len(prefix):] for k in state["files"] if k.startswith(prefix)) == FILES
    # `modelci registry pull` of 1.1.0 through GitLab's API (a fake GitLab on the same store) verifies
    from gitlab_fake import FakeGitLab
    from modelci import artifact
    from modelci.settings.registry import RegistrySettings
    from modelci.steps import registry as step

    fake = FakeGitLab(projects={PROJECT: {"path": "mlops/wine"}})  # its own routes: a new namespace
    fake.routes = [r for r in fake.routes if r[2] not in ("mlflow", "ml_model_files")]
    fake.ml = attach(fake, mlflow_server.url, mlflow_server.store, ns)  # the scenario's GitLab
    fake.start()
    import os

    saved = {k: os.environ.get(k) for k in ("CI_API_V4_URL", "CI_PROJECT_ID", "MODELCI_GITLAB_TOKEN")}
    os.environ.update({"CI_API_V4_URL": fake.api_url, "CI_PROJECT_ID": str(PROJECT),
                       "MODELCI_GITLAB_TOKEN": "glpat-test-api-token"})
    try:
        pulled = step.run(RegistrySettings(action="pull", backend="gitlab", name="wine", config="absent.yml",
                                           version="1.1.0", out=str(tmp_path / "pulled"))).data
    finally:
        fake.stop()
        for k, val in saved.items():
            os.environ.pop(k, None) if val is None else os.environ.__setitem__(k, val)
    assert pulled["sha256"] == lineage_b["sha256"]
    assert artifact.verify_model(tmp_path / "pulled")["version"] == "1.1.0"
