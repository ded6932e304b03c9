"""The MR / commit note: created once, updated in place, with the table, verdict and uploaded plot."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["gitlab_fake"]  # the fake_gitlab fixture
from modelci import cli, gate, gitlab_api, report
from modelci.errors import ModelCIError
from modelci.steps.gate import write_outputs

COMMIT = "c0ffee" * 6 + "abcd"


def gate_dir(tmp_path: Path, name: str = "demo", better: bool = True) -> Path:
    """Real gate output (verdict.json, summary, plot) from synthetic predictions."""
    r = np.random.default_rng(0)
    y = r.integers(0, 3, 600)
    good = np.where(r.random(600) < 0.9, y, r.integers(0, 3, 600))
    bad = np.where(r.random(600) < 0.7, y, r.integers(0, 3, 600))
    pol = gate.normalize_policy({"primary_metric": "accuracy", "bootstrap": {"samples": 200}}, "classification")
    cand, champ = (good, bad) if better else (bad, good)
    result = gate.evaluate(pol, "classification", y, cand, champ, classes=[0, 1, 2])
    result.update({"schema": gate.VERDICT_SCHEMA, "sha256": "ab" * 32, "champion_sha256": "cd" * 32,
                   "model": {"name": name, "version": "1.3.0"}, "champion": {"name": name, "version": "1.2.0"}})
    out = tmp_path / f"gate-{name}-{better}"
    write_outputs(result, out, "classification", y, cand)
    return out


def mr_calls(fake):
    return [(c["method"], c["route"]) for c in fake.requests if c["route"] in ("mr_notes", "mr_note")
            and c["method"] != "GET"]


def test_mr_note_created_once_then_updated_in_place(fake_gitlab, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CI_MERGE_REQUEST_IID", "7")
    monkeypatch.setenv("CI_PIPELINE_URL", "http://127.0.0.1/group/project/-/pipelines/1")
    # someone else's notes first, more than one page of 100, so the marker must be searched for
    for i in range(150):
        fake_gitlab.notes.setdefault("42!7", []).append({
            "id": i + 1, "body": f"human comment {i}", "system": False, "created_at": f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
            "updated_at": "2024-01-01T00:00:00Z", "noteable_type": "MergeRequest", "noteable_iid": 7})
    d = gate_dir(tmp_path)
    for run in range(3):
        assert cli.main(["report", "--gate-dir", str(d)]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["target"] == "merge_request" and out["action"] == ("created" if run == 0 else "updated")
    assert mr_calls(fake_gitlab) == [("POST", "mr_notes"), ("PUT", "mr_note"), ("PUT", "mr_note")]
    ours = [n for n in fake_gitlab.notes["42!7"] if report.marker("demo") in n["body"]]
    assert len(ours) == 1
    body = ours[0]["body"]
    assert body.startswith("<!-- modelci-report:demo -->")
    assert "| metric |" in body and "accuracy (primary)" in body and "PROMOTE" in body
    assert "interval" in body and "[pipeline](http://127.0.0.1/group/project/-/pipelines/1)" in body
    assert "![gate](/uploads/" in body  # the plot, uploaded through the uploads API
    assert len(fake_gitlab.calls("POST", "uploads")) == 3
    assert fake_gitlab.uploads[-1]["size"] == (d / "gate.png").stat().st_size
    # the notes list was walked page by page (per_page=100 -> 2 pages) on every run
    pages = [c["query"].get("page", "1") for c in fake_gitlab.calls("GET", "mr_notes")]
    assert pages.count("2") >= 2


def test_one_note_per_model(fake_gitlab, tmp_path):
    client = gitlab_api.from_env()
    report.post_report(client, gate_dir(tmp_path, "iris"), mr_iid="7")
    report.post_report(client, gate_dir(tmp_path, "wine", better=False), mr_iid="7")
    report.post_report(client, gate_dir(tmp_path, "iris"), mr_iid="7")
    assert mr_calls(fake_gitlab) == [("POST", "mr_notes"), ("POST", "mr_notes"), ("PUT", "mr_note")]
    bodies = [n["body"] for n in fake_gitlab.notes["42!7"]]
    assert "REJECT" in next(b for b in bodies if "modelci-report:wine" in b)


def test_commit_note_without_mr(fake_gitlab, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CI_COMMIT_SHA", COMMIT)
    d = gate_dir(tmp_path)
    for _ in range(3):
        assert cli.main(["report", "--gate-dir", str(d), "--no-plot"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["target"] == "commit" and out["action"] == "updated"
    writes = [(c["method"], c["route"]) for c in fake_gitlab.requests if c["method"] != "GET"]
    assert writes == [("POST", "commit_discussions"), ("PUT", "commit_discussion_note"),
                      ("PUT", "commit_discussion_note")]
    threads = fake_gitlab.discussions[f"42@{COMMIT}"]
    assert len(threads) == 1 and report.marker("demo") in threads[0]["notes"][0]["body"]
    assert not fake_gitlab.calls("POST", "uploads")


def test_report_errors(fake_gitlab, tmp_path, monkeypatch, capsys):
    d = gate_dir(tmp_path)
    assert cli.main(["report", "--gate-dir", str(d)]) == 1
    assert "CI_MERGE_REQUEST_IID nor CI_COMMIT_SHA" in capsys.readouterr().err
    assert cli.main(["report", "--gate-dir", str(d), "--mr", "99"]) == 1
    assert "404 Merge Request Not Found" in capsys.readouterr().err
    assert cli.main(["report", "--gate-dir", str(tmp_path / "nothing"), "--mr", "7"]) == 1
    assert "verdict.json" in capsys.readouterr().err
    monkeypatch.delenv("MODELCI_GITLAB_TOKEN")
    monkeypatch.setenv("CI_JOB_TOKEN", "job-token-123")
    assert cli.main(["report", "--gate-dir", str(d), "--mr", "7"]) == 1
    err = capsys.readouterr().err
    assert "CI_JOB_TOKEN cannot be used" in err and "`api` scope" in err


def test_report_retries_transient_errors(fake_gitlab, tmp_path):
    fake_gitlab.fail_next(2, status=502, path_contains="/notes")
    fake_gitlab.fail_next(1, status=429, retry_after=0, path_contains="/uploads")
    result = report.post_report(gitlab_api.from_env(), gate_dir(tmp_path), mr_iid="7")
    assert result["action"] == "created"
    assert len(fake_gitlab.notes["42!7"]) == 1


def test_persistent_failure_is_not_a_silent_pass(fake_gitlab, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELCI_GITLAB_RETRIES", "2")
    fake_gitlab.fail_next(5, status=503, path_contains="/notes")
    with pytest.raises(ModelCIError, match="503.*after 2 attempts"):
        report.post_report(gitlab_api.from_env(), gate_dir(tmp_path), mr_iid="7", plot=False)


def test_project_given_as_path(fake_gitlab, tmp_path, monkeypatch):
    """CI_PROJECT_ID may be a group/project path: every call, uploads included, must URL-encode it."""
    monkeypatch.setenv("CI_PROJECT_ID", "group/project")
    result = report.post_report(gitlab_api.from_env(), gate_dir(tmp_path), mr_iid="7")
    assert result["action"] == "created" and result["image"].startswith("![gate](/uploads/")
    assert fake_gitlab.calls("POST", "uploads")[0]["status"] == 201
