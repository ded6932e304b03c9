"""The k8s step: render the Kubernetes target's manifests and check them offline (no cluster is
contacted); see modelci.k8s for what is rendered."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import k8s, log
from ..errors import ModelCIError
from ..settings.k8s import RenderSettings, ValidateSettings
from . import Result

K8S_VERSION = k8s.K8S_VERSION


def _summary(manifests: list[dict[str, Any]]) -> list[str]:
    return [f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}" for d in manifests if isinstance(d, dict)]


def render(s: RenderSettings) -> Result:
    if not s.environment:
        raise ModelCIError("no environment: pass --environment or set MODELCI_ENVIRONMENT")
    manifests = k8s.render(environment=s.environment, image=s.image, port=s.port,
                           replicas=s.replicas, name=s.name, namespace=s.namespace,
                           model_version=s.model_version, model_sha256=s.model_sha256,
                           cpu_request=s.cpu_request, memory_request=s.memory_request,
                           cpu_limit=s.cpu_limit, memory_limit=s.memory_limit,
                           service_port=s.service_port)
    problems = k8s.validate(manifests, s.kubernetes_version)
    if problems:  # a bug in the renderer or a bad flag value the checks above missed
        raise ModelCIError(f"rendered manifests fail Kubernetes {s.kubernetes_version} validation: "
                           + "; ".join(problems))
    text = k8s.to_yaml(manifests)
    if not s.out or s.out == "-":
        log.info(f"k8s: rendered {', '.join(_summary(manifests))} (valid for Kubernetes {s.kubernetes_version})")
        return Result(text=text)
    out = Path(s.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log.info(f"k8s: wrote {out}; apply with: kubectl apply -f {out}")
    return Result({"out": str(out), "valid": True, "kubernetes_version": s.kubernetes_version,
                   "resources": _summary(manifests), "image": s.image})


def validate(s: ValidateSettings) -> Result:
    docs = k8s.load_yaml_documents(s.file)
    if not docs:
        raise ModelCIError(f"{s.file}: no YAML documents; render it with `modelci k8s render --out {s.file}`")
    problems = k8s.validate(docs, s.kubernetes_version)
    for p in problems:
        log.warn(f"k8s: {s.file}: {p}")
    result = Result({"file": s.file, "valid": not problems, "kubernetes_version": s.kubernetes_version,
                     "resources": _summary(docs), "problems": problems})
    if problems:
        result.exit_code = 1
        result.error = (f"{s.file}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1
                                                       else "") + "; fix the manifest or re-render it")
    return result
