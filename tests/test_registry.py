"""Model registry in GitLab's generic package registry, against the fake GitLab."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest_plugins = ["gitlab_fake"]  # the fake_gitlab fixture
from modelci import artifact, cli, gate, gitlab_api
from modelci.errors import ModelCIError
from modelci.model_registry import ModelRegistry, parse_semver


def make_model(root, name="demo", seed=0, verdict="PROMOTE", dry_run=False, passed=True):
    from sklearn.linear_model import LogisticRegression

    r = np.random.default_rng(seed)
    X = r.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(int)
    d = root / f"model-{seed}"
    meta = artifact.save_model(d, LogisticRegression().fit(X, y), {"name": name, "version": None,
                                                                   "task": "classification"})
    (d / "smoke.json").write_text(json.dumps({"inputs": [{"a": 1.0}], "expected": [1]}))
    run = root / f"run-{seed}.json"
    run.write_text(json.dumps({"run_id": f"r{seed}"}))
    v = root / f"verdict-{seed}.json"
    v.write_text(json.dumps({"schema": gate.VERDICT_SCHEMA, "verdict": verdict, "passed": passed,
                             "dry_run": dry_run, "sha256": meta["sha256"]}))
    return d, run, v, meta


@pytest.fixture
def registry(fake_gitlab):
    return ModelRegistry(gitlab_api.from_env(), "demo")


def test_semver():
    assert parse_semver("1.2.3") == (1, 2, 3)
    assert parse_semver("01.2.3") is None and parse_semver("1.2") is None and parse_semver("v1.2.3") is None


def test_push_pull_round_trip(registry, fake_gitlab, tmp_path):
    d, run, v, meta = make_model(tmp_path)
    result = registry.push(d, "1.0.0", run_record=run, verdict=v)
    assert result["uploaded"] == ["model.joblib", "smoke.json", "run.json", "verdict.json", "model.json"]
    puts = fake_gitlab.calls("PUT", "generic")
    assert [p["path"].rsplit("/", 1)[-1] for p in puts][-1] == "model.json"  # completeness marker last

    out = tmp_path / "pulled"
    pulled = registry.pull("1.0.0", out)
    assert pulled["sha256"] == meta["sha256"]
    assert sorted(p.name for p in out.iterdir()) == ["model.joblib", "model.json", "run.json", "smoke.json",
                                                     "verdict.json"]
    _estimator, got = artifact.load_model(out)  # sha256 verified
    assert got["version"] == "1.0.0" and got["sha256"] == meta["sha256"]
    assert json.loads((out / "run.json").read_text()) == {"run_id": "r0"}
    assert gate.require_passing_verdict(out / "verdict.json", out)["sha256"] == meta["sha256"]


def test_next_version_and_latest(registry, tmp_path):
    assert registry.latest() is None
    assert registry.next_version(1) == "1.0.0"
    for i, version in enumerate(["1.0.0", "1.1.0"]):
        d, run, v, _ = make_model(tmp_path, seed=i)
        registry.push(d, version, run_record=run, verdict=v)
    assert registry.next_version(1) == "1.2.0"
    assert registry.next_version(1, patch=True) == "1.1.1"
    assert registry.next_version(2) == "2.0.0"
    assert registry.latest() == "1.1.0" and registry.latest(major=1) == "1.1.0"
    d, run, v, _ = make_model(tmp_path, seed=5)
    registry.push(d, "2.0.0", run_record=run, verdict=v)
    assert registry.latest() == "2.0.0" and registry.latest(major=1) == "1.1.0"
    assert registry.next_version(2) == "2.1.0"
    with pytest.raises(ModelCIError, match="majors never go back"):
        registry.next_version(1)
    with pytest.raises(ModelCIError, match="no version with major 3"):
        registry.next_version(3, patch=True)


def test_versions_follow_pagination_and_exact_name(registry, fake_gitlab):
    for minor in range(130):  # more than one page of 100
        fake_gitlab.packages.append({"id": 5000 + minor, "seq": minor, "project_id": 42, "name": "demo",
                                     "version": f"1.{minor}.0", "created_at": "2024-01-01T00:00:00Z",
                                     "files": []})
    fake_gitlab.packages.append({"id": 9000, "seq": 999, "project_id": 42, "name": "demo-extra",
                                 "version": "1.500.0", "created_at": "2024-01-01T00:00:00Z", "files": []})
    fake_gitlab.packages.append({"id": 9001, "seq": 1000, "project_id": 42, "name": "demo",
                                 "version": "not-semver", "created_at": "2024-01-01T00:00:00Z", "files": []})
    assert registry.next_version(1) == "1.130.0"  # demo-extra (fuzzy match) and non-semver ignored
    pages = [r["query"].get("page", "1") for r in fake_gitlab.calls("GET", "packages")]
    assert pages == ["1", "2"]


def test_versions_are_immutable(registry, fake_gitlab, tmp_path):
    d, run, v, _ = make_model(tmp_path, seed=0)
    registry.push(d, "1.0.0", run_record=run, verdict=v)
    before = len(fake_gitlab.calls("PUT"))
    again = registry.push(d, "1.0.0", run_record=run, verdict=v)  # a re-run job: nothing replaced
    assert again["uploaded"] == [] and len(again["already_present"]) == 5
    assert len(fake_gitlab.calls("PUT")) == before
    other, run2, v2, _ = make_model(tmp_path, seed=1)
    with pytest.raises(ModelCIError, match="already holds another model.*immutable"):
        registry.push(other, "1.0.0", run_record=run2, verdict=v2)
    assert len(fake_gitlab.calls("PUT")) == before


@pytest.mark.parametrize("kwargs, match", [
    ({"dry_run": True}, "dry-run"),
    ({"verdict": "REJECT", "passed": False}, "does not allow"),
])
def test_push_requires_a_passing_verdict(registry, fake_gitlab, tmp_path, kwargs, match):
    d, run, v, _ = make_model(tmp_path, **kwargs)
    with pytest.raises(ModelCIError, match=match):
        registry.push(d, "1.0.0", run_record=run, verdict=v)
    assert not fake_gitlab.calls("PUT")


def test_push_refuses_verdict_of_another_model_and_bad_version(registry, fake_gitlab, tmp_path):
    d, run, _, _ = make_model(tmp_path, seed=0)
    _, _, other_verdict, _ = make_model(tmp_path, seed=1)
    with pytest.raises(ModelCIError, match="verdict is for model"):
        registry.push(d, "1.0.0", run_record=run, verdict=other_verdict)
    with pytest.raises(ModelCIError, match="not semver"):
        registry.push(d, "1.0", run_record=run, verdict=other_verdict)
    assert not fake_gitlab.calls("PUT")


def test_pull_errors(registry, fake_gitlab, tmp_path):
    with pytest.raises(ModelCIError, match="demo 9.9.9 does not exist.*latest versions: none"):
        registry.pull("9.9.9", tmp_path / "x")
    d, run, v, _ = make_model(tmp_path)
    registry.push(d, "1.0.0", run_record=run, verdict=v)
    stored = next(f for f in fake_gitlab.packages[0]["files"] if f["file_name"] == "model.joblib")
    stored["data"] = stored["data"][:-1] + b"\x00"  # corrupted in storage/transit
    out = tmp_path / "out"
    with pytest.raises(ModelCIError, match="model.joblib: sha256 .* does not match the registry"):
        registry.pull("1.0.0", out)
    assert not out.exists()
    # an incomplete version (model.json never uploaded) is refused
    client = registry.client
    client.project.generic_packages.upload("demo", "1.1.0", "model.joblib", data=b"x")
    with pytest.raises(ModelCIError, match="incomplete.*model.json"):
        registry.pull("1.1.0", out)


def test_invalid_package_name(fake_gitlab):
    with pytest.raises(ModelCIError, match="generic package name"):
        ModelRegistry(gitlab_api.from_env(), "my model/v2")


def test_registry_with_job_token(fake_gitlab, monkeypatch, tmp_path):
    monkeypatch.delenv("MODELCI_GITLAB_TOKEN")
    monkeypatch.setenv("CI_JOB_TOKEN", "job-token-123")
    registry = ModelRegistry(gitlab_api.from_env(), "demo")
    d, run, v, _ = make_model(tmp_path)
    registry.push(d, "1.0.0", run_record=run, verdict=v)
    assert registry.next_version(1) == "1.1.0"
    assert {r["auth"] for r in fake_gitlab.requests} == {"job"}


def test_registry_cli(fake_gitlab, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MODELCI_MODEL_REGISTRY", "generic")
    cfg = tmp_path / "modelci.yml"
    cfg.write_text("model: {name: demo, major: 3}\n")
    dotenv = tmp_path / "version.env"
    assert cli.main(["registry", "next-version", "--config", str(cfg), "--dotenv", str(dotenv)]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "demo", "version": "3.0.0"}
    assert dotenv.read_text() == "MODELCI_MODEL_VERSION=3.0.0\n"

    d, run, v, meta = make_model(tmp_path)
    assert cli.main(["registry", "push", "--model", str(d), "--version", "3.0.0", "--run-record", str(run),
                     "--verdict", str(v)]) == 0
    assert json.loads(capsys.readouterr().out)["sha256"] == meta["sha256"]
    assert cli.main(["registry", "latest", "--name", "demo"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "3.0.0"
    assert cli.main(["registry", "pull", "--name", "demo", "--version", "latest", "--out",
                     str(tmp_path / "champion")]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "3.0.0"
    assert artifact.verify_model(tmp_path / "champion")["version"] == "3.0.0"
    assert cli.main(["registry", "pull", "--name", "demo", "--version", "3.1.0", "--out",
                     str(tmp_path / "x")]) == 1
    assert "demo 3.1.0 does not exist" in capsys.readouterr().err


def test_registry_cli_api_error_is_one_line(fake_gitlab, monkeypatch, capsys):
    monkeypatch.setenv("MODELCI_MODEL_REGISTRY", "generic")
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-bad-token-123456")
    assert cli.main(["registry", "latest", "--name", "demo"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "401" in err[0] and "`read_package_registry`" in err[0]
    assert "glpat-bad-token-123456" not in err[0]


def test_pull_never_empties_a_directory_it_did_not_create(registry, tmp_path, monkeypatch):
    d, run, v, meta = make_model(tmp_path)
    registry.push(d, "1.0.0", run_record=run, verdict=v)
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text("keep")
    monkeypatch.chdir(work)
    for out in (".", str(work), str(tmp_path), "/"):
        with pytest.raises(ModelCIError, match="is never replaced by an output"):
            registry.pull("1.0.0", out)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    with pytest.raises(ModelCIError, match="the home directory is never replaced"):
        registry.pull("1.0.0", str(tmp_path / "home"))
    foreign = work / "champion"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ModelCIError, match="not empty and was not made by"):
        registry.pull("1.0.0", foreign)
    assert (foreign / "notes.txt").read_text() == "mine" and (work / "train.py").read_text() == "keep"
    (work / "empty").mkdir()
    assert registry.pull("1.0.0", work / "empty")["sha256"] == meta["sha256"]
    assert registry.pull("1.0.0", work / "empty")["sha256"] == meta["sha256"]  # its own earlier pull


def test_registry_choice_and_old_boolean_values(monkeypatch):
    from modelci.settings.registry import backend

    for value, expected in (("gitlab", "gitlab"), ("generic", "generic"), ("none", "none"), ("true", "gitlab"),
                            ("false", "none"), ("", "gitlab")):
        monkeypatch.setenv("MODELCI_MODEL_REGISTRY", value)
        assert backend(None) == expected
    monkeypatch.setenv("MODELCI_MODEL_REGISTRY", "packages")
    with pytest.raises(ModelCIError, match="gitlab, generic or none"):
        backend(None)
    assert backend("generic") == "generic"  # the flag wins
