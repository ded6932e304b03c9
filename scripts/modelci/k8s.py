"""Kubernetes target: render a Deployment + Service for the serving image, and check them offline.

Same inputs as the Docker deploy (environment name, image pinned by digest, port, replicas) plus
the model version/sha256 from the build job's dotenv (MODELCI_MODEL_VERSION, MODELCI_MODEL_SHA256).
The manifests follow the Docker target's rules: the image by digest only, readiness on
/v2/health/ready and liveness on /v2/health/live, a rolling update that never drops below the wanted
replicas (maxUnavailable 0), the non-root user 10001 of the serving image, bounded resources.

Validation is offline, with kubernetes-validate's bundled OpenAPI schemas of a pinned Kubernetes
version (strict: unknown fields are errors). Nothing here talks to a cluster.
"""
from __future__ import annotations

import re
from typing import Any

from .errors import ModelCIError

K8S_VERSION = "1.33.0"  # schemas bundled by kubernetes-validate; bump deliberately
DIGEST_RE = re.compile(r"^(?P<repo>[^@\s]+)@sha256:(?P<hex>[0-9a-f]{64})$")
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
UID = 10001


def check_image(image: str | None) -> str:
    if not image:
        raise ModelCIError("no image: pass --image REPO@sha256:<digest> or set MODELCI_IMAGE (the build job's "
                           "dotenv report)")
    m = DIGEST_RE.match(image.strip())
    if not m:
        raise ModelCIError(f"--image {image}: not pinned by digest; Kubernetes must run exactly the image "
                           f"staging tested, so give REPO@sha256:<64 hex> (MODELCI_IMAGE from the build job)")
    return image.strip()


def _dns_label(value: str, flag: str) -> str:
    if not DNS_LABEL_RE.match(value):
        raise ModelCIError(f"{flag} {value!r}: must be a DNS label (lower-case letters, digits and '-', at most "
                           f"63 characters, starting and ending with a letter or digit)")
    return value


def _label_value(value: str, flag: str) -> str:
    if len(value) > 63 or not LABEL_VALUE_RE.match(value):
        raise ModelCIError(f"{flag} {value!r}: not a valid Kubernetes label value (at most 63 characters of "
                           f"letters, digits, '-', '_', '.')")
    return value


def render(*, environment: str, image: str | None, port: int = 8080, replicas: int = 2, name: str = "modelci-serving",
           namespace: str | None = None, model_version: str | None = None, model_sha256: str | None = None,
           cpu_request: str = "250m", memory_request: str = "512Mi", cpu_limit: str = "1",
           memory_limit: str = "1Gi", service_port: int = 80, grpc_port: int = 8081) -> list[dict[str, Any]]:
    """The Deployment and the Service of one environment, as dicts (apply order)."""
    image = check_image(image)
    _dns_label(environment, "--environment")
    _dns_label(name, "--name")
    full = f"{name}-{environment}"
    _dns_label(full, "--name/--environment (combined)")
    if namespace:
        _dns_label(namespace, "--namespace")
    for port_value, flag in ((port, "--port"), (service_port, "--service-port"), (grpc_port, "grpc_port")):
        if not 1 <= port_value <= 65535:
            raise ModelCIError(f"{flag} {port_value}: must be a TCP port (1-65535)")
    if replicas < 1:
        raise ModelCIError(f"--replicas {replicas}: must be 1 or more (0 would take the environment down)")
    for value, flag in ((cpu_request, "--cpu-request"), (memory_request, "--memory-request"),
                        (cpu_limit, "--cpu-limit"), (memory_limit, "--memory-limit")):
        if not QUANTITY_RE.match(value):
            raise ModelCIError(f"{flag} {value!r}: not a Kubernetes quantity (e.g. 250m, 1, 512Mi, 1Gi)")
    if model_sha256 and not re.fullmatch(r"[0-9a-f]{64}", model_sha256):
        raise ModelCIError(f"--model-sha256 {model_sha256!r}: expected 64 lower-case hex characters")
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": environment}
    labels = {**selector, "app.kubernetes.io/component": "model-serving", "app.kubernetes.io/managed-by": "modelci"}
    pod_labels = dict(labels)
    annotations = {"modelci.io/image": image}
    if model_version:
        pod_labels["app.kubernetes.io/version"] = _label_value(model_version, "--model-version")
        annotations["modelci.io/model-version"] = model_version
    if model_sha256:
        pod_labels["modelci.io/model-sha256"] = model_sha256[:63]  # label values are at most 63 characters
        annotations["modelci.io/model-sha256"] = model_sha256
    meta = {"name": full, "labels": dict(pod_labels), "annotations": dict(annotations)}
    if namespace:
        meta["namespace"] = namespace
    env = [{"name": "HOST", "value": "0.0.0.0"}, {"name": "PORT", "value": str(port)},
           {"name": "GRPC_PORT", "value": str(grpc_port)}]  # the OIP gRPC service (app/README.md)
    if model_version:
        env.append({"name": "MODELCI_MODEL_VERSION", "value": model_version})
    probe = {"httpGet": {"path": "/v2/health/ready", "port": "http"}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 10,  # `kubectl rollout undo` needs the old ReplicaSets
            "minReadySeconds": 5,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                                        "fsGroup": UID, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "serving",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"},
                                  {"name": "grpc", "containerPort": grpc_port, "protocol": "TCP"}],
                        "env": env,
                        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 60},
                        "readinessProbe": {**probe, "periodSeconds": 5, "timeoutSeconds": 2,
                                           "failureThreshold": 3},
                        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"},
                                          "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
                        # keep serving while the endpoint is removed from the Service, then stop
                        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
                        "resources": {"requests": {"cpu": cpu_request, "memory": memory_request},
                                      "limits": {"cpu": cpu_limit, "memory": memory_limit}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "runAsUser": UID,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {k: v for k, v in {"name": full, "namespace": namespace,
                                       "labels": dict(labels)}.items() if v},
        "spec": {"type": "ClusterIP", "selector": selector,
                 "ports": [{"name": "http", "port": service_port, "targetPort": "http", "protocol": "TCP"},
                           {"name": "grpc", "port": grpc_port, "targetPort": "grpc", "protocol": "TCP",
                            "appProtocol": "kubernetes.io/h2c"}]},
    }
    return [deployment, service]


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    import yaml

    return yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False)


def validate(manifests: list[dict[str, Any]], version: str = K8S_VERSION, strict: bool = True) -> list[str]:
    """Offline schema check of each manifest; returns one line per problem (empty = valid)."""
    import kubernetes_validate as kv

    problems = []
    for i, doc in enumerate(manifests):
        where = f"document {i + 1}"
        if not isinstance(doc, dict):
            problems.append(f"{where}: not a mapping")
            continue
        where = f"{where} ({doc.get('kind', '?')} {(doc.get('metadata') or {}).get('name', '?')})"
        try:
            kv.validate(doc, version, strict=strict)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "(top level)"
            problems.append(f"{where}: {path}: {exc.message}")
        except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as exc:
            problems.append(f"{where}: no Kubernetes {version} schema for it ({exc})")
        except Exception as exc:  # noqa: BLE001 - e.g. VersionNotSupportedError
            problems.append(f"{where}: {exc.__class__.__name__}: {exc}")
    return problems


def load_yaml_documents(path: str) -> list[Any]:
    import yaml

    try:
        with open(path) as fh:
            return [d for d in yaml.safe_load_all(fh) if d is not None]
    except FileNotFoundError:
        raise ModelCIError(f"{path}: manifest file not found; render it with `modelci k8s render --out {path}`") \
            from None
    except yaml.YAMLError as exc:
        raise ModelCIError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix or re-render it") from None
