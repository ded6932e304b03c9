"""`modelci k8s`: rendered manifests validate offline against the pinned Kubernetes schemas; an image
without a digest is refused; a broken manifest fails validation."""
from __future__ import annotations

import json

import pytest
import yaml

from modelci import cli, k8s
from modelci.errors import ModelCIError

DIGEST = "sha256:" + "ab" * 32
IMAGE = f"127.0.0.1:5000/group/project/serving@{DIGEST}"
MODEL_SHA = "cd" * 32


@pytest.fixture(autouse=True)
def k8s_command(monkeypatch):
    """Until cli.COMMAND_MODULES lists the k8s command, add it for these tests."""
    if "modelci.commands.k8s" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "modelci.commands.k8s"])


def _main(capsys, *argv):
    code = cli.main(["k8s", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_render_validates_and_has_the_safety_settings(tmp_path, capsys):
    out = tmp_path / "k8s" / "production.yaml"
    code, stdout, err = _main(capsys, "render", "--environment", "production", "--image", IMAGE, "--replicas", "3",
                              "--model-version", "1.4.2", "--model-sha256", MODEL_SHA, "--namespace", "ml",
                              "--out", str(out))
    assert code == 0, err
    result = json.loads(stdout)
    assert result["valid"] and result["resources"] == ["Deployment/modelci-serving-production",
                                                       "Service/modelci-serving-production"]
    assert "kubectl apply -f" in err
    dep, svc = list(yaml.safe_load_all(out.read_text()))
    assert k8s.validate([dep, svc]) == []
    spec = dep["spec"]
    assert spec["replicas"] == 3 and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == IMAGE
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"] is True
    assert c["resources"]["limits"]["memory"] == "1Gi" and c["resources"]["requests"]["cpu"] == "250m"
    labels = spec["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == "1.4.2"
    assert MODEL_SHA.startswith(labels["modelci.io/model-sha256"])
    assert spec["template"]["metadata"]["annotations"]["modelci.io/model-sha256"] == MODEL_SHA
    # the selector holds only labels that never change between versions (it is immutable)
    assert spec["selector"]["matchLabels"] == svc["spec"]["selector"] == {
        "app.kubernetes.io/name": "modelci-serving", "app.kubernetes.io/instance": "production"}
    assert svc["spec"]["ports"][0]["targetPort"] == "http" and dep["metadata"]["namespace"] == "ml"
    # the OIP gRPC service has its own port, in the pod and in the Service (HTTP/2 cleartext)
    assert {"name": "grpc", "containerPort": 8081, "protocol": "TCP"} in c["ports"]
    assert {"name": "GRPC_PORT", "value": "8081"} in c["env"]
    grpc_svc = next(p for p in svc["spec"]["ports"] if p["name"] == "grpc")
    assert grpc_svc["port"] == 8081 and grpc_svc["targetPort"] == "grpc"
    assert grpc_svc["appProtocol"] == "kubernetes.io/h2c"
    # the file validates through the CLI too
    code, stdout, err = _main(capsys, "validate", str(out))
    assert code == 0 and json.loads(stdout)["valid"] is True


def test_render_to_stdout_from_the_deploy_environment(capsys, monkeypatch):
    monkeypatch.setenv("MODELCI_ENVIRONMENT", "staging")
    monkeypatch.setenv("MODELCI_IMAGE", IMAGE)
    code, stdout, err = _main(capsys, "render")
    assert code == 0, err
    docs = list(yaml.safe_load_all(stdout))
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    assert docs[0]["metadata"]["name"] == "modelci-serving-staging"


@pytest.mark.parametrize("image", ["127.0.0.1:5000/group/serving:1.4.2", "serving", "repo@sha256:abc",
                                   f"repo:1.0@{DIGEST.upper()}"])
def test_image_without_digest_is_refused(capsys, image):
    code, stdout, err = _main(capsys, "render", "--environment", "production", "--image", image)
    assert code == 1 and stdout == ""
    assert "not pinned by digest" in err and "@sha256:" in err


def test_bad_flags_are_refused():
    for kwargs, needle in (({"environment": "Prod_1"}, "DNS label"), ({"replicas": 0}, "--replicas"),
                           ({"port": 70000}, "--port"), ({"memory_limit": "lots"}, "quantity"),
                           ({"model_version": "x" * 70}, "label value")):
        with pytest.raises(ModelCIError, match=needle):
            k8s.render(**{"environment": "production", "image": IMAGE, **kwargs})


def test_broken_manifests_fail_validation(tmp_path, capsys):
    dep, svc = k8s.render(environment="production", image=IMAGE)
    dep["spec"]["replicas"] = "three"  # wrong type
    svc["spec"]["portz"] = []  # unknown field: strict validation rejects it
    problems = k8s.validate([dep, svc])
    assert len(problems) == 2
    assert "spec.replicas" in problems[0] and "integer" in problems[0]
    assert "portz" in problems[1]
    path = tmp_path / "broken.yaml"
    path.write_text(k8s.to_yaml([dep, svc]))
    code, stdout, err = _main(capsys, "validate", str(path))
    assert code == 1 and json.loads(stdout)["valid"] is False
    assert "spec.replicas" in err


def test_validate_missing_file_is_one_line(capsys, tmp_path):
    code, _, err = _main(capsys, "validate", str(tmp_path / "nope.yaml"))
    assert code == 1 and "not found" in err


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["k8s", "render", "--help"])
    assert exc.value.code == 0 and "kubectl apply" in capsys.readouterr().out
