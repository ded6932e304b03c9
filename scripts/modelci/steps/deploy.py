"""`modelci deploy`: put a serving image (by digest) behind an environment's URL on a Docker host
the job does not share (docs/deploy-targets.md).

Under the environment's lock on the target: remove the environment's backends its proxy does not
name (what a killed deploy left), start the new backend beside the served one, wait for its
readiness and replay the model's smoke test ON the target, switch the proxy's upstream (config on a
volume, graceful reload), confirm the environment serves the new model, then stop the old backend.
Any failure, and SIGTERM (GitLab's job cancel), restores exactly the config the proxy had and
removes the new backend. After SIGKILL at any moment the proxy's config names the previous or the
new backend, so production serves one of them and the next deploy cleans up.
"""
from __future__ import annotations

import contextlib
import json
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import artifact, dockerutil, log, trust
from ..deploy import checks
from ..deploy import proxy as proxy_conf
from ..deploy.lock import TargetLock
from ..deploy.target import DockerTarget
from ..errors import ModelCIError
from ..settings import get
from ..settings.common import MODEL_VERSION
from ..settings.deploy import DeploySettings
from . import Result


class Cancelled(ModelCIError):
    """SIGTERM during a deploy: handled like any failure (the previous backend keeps serving)."""


@contextlib.contextmanager
def sigterm_as_failure() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one cancellation is enough: let cleanup finish
        raise Cancelled("deploy cancelled (SIGTERM): restoring what the proxy served")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run(s: DeploySettings) -> Result:
    if not s.environment:
        raise ModelCIError("no environment: pass --environment or set MODELCI_ENVIRONMENT")
    if s.teardown:
        t = DockerTarget(dockerutil.client(), s.namespace, s.environment, s.url or "http://127.0.0.1:1")
        return Result({"environment": s.environment, "removed": t.teardown()})
    if not s.url:
        raise ModelCIError("no environment URL: pass --url or set the environment's url input")
    if s.identical_to_production:  # the build record says the retrained model is production's, byte for byte
        if s.release_checks or s.environment == "production":
            trust.refuse_committed_outputs()  # a committed out/build.env is no build record
        version = get(MODEL_VERSION.name) or "its current version"
        log.info(f"identical to production: {s.environment} keeps serving {version}; nothing to deploy")
        return Result({"environment": s.environment, "status": "identical to production", "deployed": False})
    if s.release_checks or s.environment == "production":
        # production's checks (docs/design.md#evaluation-set-and-champion): fixed by the component's script
        release = trust.check_release(s.image, s.environment)
        log.info(f"release checks passed for {s.environment}: model {release['model_sha256'][:12]}… on basis "
                 f"{release['basis']} (the build record's image {release['image']})")
        s = s.replace(image=release["image"])
    if not s.image:
        raise ModelCIError("no image: pass --image or run after the build job (its dotenv report sets "
                           "MODELCI_IMAGE)")
    with sigterm_as_failure():
        data = deploy(s)
    if s.dotenv:
        dockerutil.write_dotenv(s.dotenv, {
            "MODELCI_DEPLOYED_IMAGE": data["image"], "MODELCI_DEPLOYED_VERSION": data["model_version"],
            "MODELCI_DEPLOYED_PROXY_IMAGE": data["proxy_image"]})
    log.info(f"{s.environment} at {s.url} serves {data['model_name']} {data['model_version']}")
    return Result(data)


def _image_model(c: Any, image_ref: str, work: Path) -> tuple[dict[str, str], dict[str, Any], dict | None]:
    labels = dockerutil.image_labels(c, image_ref)
    model_dir = dockerutil.extract_dir(c, image_ref, "/app/artifact", work / "artifact")
    meta = artifact.verify_model(model_dir)
    if labels.get("io.modelci.model.sha256") and labels["io.modelci.model.sha256"] != meta["sha256"]:
        raise ModelCIError(f"{image_ref}: label io.modelci.model.sha256 does not match the model inside")
    smoke_path = model_dir / "smoke.json"
    smoke = json.loads(smoke_path.read_text()) if smoke_path.exists() else None
    return labels, meta, smoke


def _pull_proxy(c: Any, ref: str, image_ref: str) -> str:
    """Pull the proxy image onto the target and return the digest reference it runs as."""
    registry = ref.split("/", 1)[0]
    auth = dockerutil.login(c, registry) if registry == image_ref.split("/", 1)[0] else None
    with log.section("modelci_pull_proxy", f"pull {ref}"):
        image = dockerutil.pull(c, ref, auth)
    repo = ref.split("@", 1)[0].rsplit(":", 1)[0] if "@" not in ref else ref.split("@", 1)[0]
    digests = [d for d in image.attrs.get("RepoDigests") or [] if d.split("@", 1)[0] == repo]
    if not digests:
        raise ModelCIError(f"proxy image {ref}: no registry digest after the pull; publish it to a registry")
    return str(digests[0])


def _max_body(c: Any, image_ref: str) -> int:
    """The app's request-body limit (MODELCI_MAX_BODY_BYTES in the image, else the app's default):
    the proxy accepts exactly what the app accepts."""
    env = dict(e.split("=", 1) for e in c.images.get(image_ref).attrs["Config"].get("Env") or [] if "=" in e)
    try:
        return int(env.get("MODELCI_MAX_BODY_BYTES") or 10 << 20)
    except ValueError:
        return 10 << 20


def deploy(s: DeploySettings) -> dict[str, Any]:
    image_ref = str(s.image)
    if "@sha256:" not in image_ref:
        raise ModelCIError(f"image {image_ref!r} is not pinned by digest (REPO@sha256:…); deploy the "
                           "digest from the build job's dotenv report (MODELCI_IMAGE)")
    t0 = time.time()
    c = dockerutil.client()
    engine = dockerutil.engine_identity(c)
    log.info(f"deploy target: Docker engine {engine['name']} {engine['version']} (data root {engine['root']})")
    t = DockerTarget(c, s.namespace, str(s.environment), str(s.url))
    auth = dockerutil.login(c, image_ref.split("/", 1)[0])
    with log.section("modelci_pull", f"pull {image_ref} onto the target"):
        dockerutil.pull(c, image_ref, auth)
    proxy_ref = _pull_proxy(c, s.proxy_image, image_ref)
    with tempfile.TemporaryDirectory(prefix="modelci-deploy-") as tmp:
        labels, meta, smoke = _image_model(c, image_ref, Path(tmp))
    version = labels.get("io.modelci.model.version") or meta.get("version")
    timings: dict[str, float] = {}
    lock = TargetLock(t, image_ref, stale=s.lock_stale, timeout=s.lock_timeout)
    with lock.held() as waited:
        timings["lock_s"] = round(waited, 2)
        proxy = t.ensure_proxy(proxy_ref)
        conf_before = t.read_conf(proxy)
        _reconcile(t, proxy, conf_before)
        port, grpc_port = t.free_ports(image_ref, 2)
        name = t.backend_name(image_ref)
        new: Any = None
        try:
            new = t.start_backend(name, image_ref, port, grpc_port, s.backend_memory, s.backend_pids)
            log.info(f"deploy {meta.get('name')} {version} to {s.environment}: new backend {name} started on "
                     f"the target's 127.0.0.1:{port}")
            ts = time.time()
            with log.section("modelci_ready", f"waiting for readiness of {new.name} (on the target)"):
                checks.wait_ready(t, new, port, s.ready_timeout)
            timings["ready_s"] = round(time.time() - ts, 2)
            result = checks.smoke_test(t, new, f"http://127.0.0.1:{port}", smoke, meta["sha256"])
            log.info(f"smoke test passed on {result['rows']} rows (on the target)")
            lock.check()
            served = proxy_conf.Served(new.name, port, grpc_port)
            grpc_listen = t.listen(s.grpc_port) if s.grpc_port else None
            t.write_conf(proxy, proxy_conf.site_conf(t.listen(t.port), served, _max_body(c, image_ref),
                                                     grpc_listen))
            _confirm(t, new, meta["sha256"])
            log.info(f"switched {s.environment} to {new.name}; the old backends stop in {s.drain_seconds:g}s")
            time.sleep(s.drain_seconds)  # in-flight requests on the old proxy workers finish; a
            # cancellation until now still restores the previous backend, which is still running
        except BaseException:
            log.warn(f"deploy to {s.environment} failed: restoring the proxy's previous upstream, "
                     f"removing {name}")
            new = new or t.get(name)  # interrupted while the engine created it
            restored = False
            with contextlib.suppress(Exception):
                if t.read_conf(proxy) != conf_before:
                    t.write_conf(proxy, conf_before)
                    restored = True
            if restored and new is not None:  # requests the new backend accepted finish before it stops
                time.sleep(s.drain_seconds)
                with contextlib.suppress(Exception):
                    new.stop(timeout=10)
            if new is not None:
                t.remove(new, "failed deploy")
            raise
        old = [b for b in t.backends() if b.id != new.id]
        for b in old:
            with contextlib.suppress(Exception):
                b.stop(timeout=10)
            t.remove(b, "replaced")
    timings["total_s"] = round(time.time() - t0, 2)
    return {"environment": s.environment, "url": s.url, "image": image_ref, "model_name": meta.get("name"),
            "model_version": version, "sha256": meta["sha256"], "backend": new.name,
            "replaced": [b.name for b in old], "proxy_image": proxy_ref,
            "target": {"name": engine["name"], "root": engine["root"], "labels": engine["labels"]},
            "timings": timings}


def _reconcile(t: DockerTarget, proxy: Any, conf: str) -> Any | None:
    """Make the proxy's running state match its config file and remove every backend of this
    environment the config does not name (a killed deploy's leftovers). Returns the served backend."""
    served = proxy_conf.served(conf)
    current = None
    for b in t.backends():
        if served is not None and b.name == served.name:
            current = b
        else:
            t.remove(b, "not served by the proxy")
    if served is not None:
        if current is None:
            log.warn(f"the proxy names {served.name}, which is gone: {t.env} does not serve until this deploy")
        t.reload(proxy)  # a deploy killed between config write and reload: serve what the file says
    return current


def _confirm(t: DockerTarget, new: Any, sha: str) -> None:
    """The environment's address, asked on the target, serves the new model."""
    deadline = time.time() + 15
    while True:
        try:
            if checks.lineage(t, new, t.on_target_url()).get("sha256") == sha:
                return
        except ModelCIError:
            pass
        if time.time() > deadline:
            raise ModelCIError(f"{t.url} does not serve the new model after the switch")
        time.sleep(0.2)
