"""Docker engine helpers (docker SDK, DOCKER_HOST from the environment)."""
from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import log
from .errors import ModelCIError

_SSH_HOME: list[str] = []


def client() -> Any:
    """The Docker engine at DOCKER_HOST: unix://, tcp:// (TLS with DOCKER_TLS_VERIFY and
    DOCKER_CERT_PATH) or ssh://USER@HOST (docs/deploy-targets.md). Over ssh:// the client is
    paramiko (a pinned Python dependency: the tools image needs no ssh binary); its private key and
    the host's known_hosts entry come from MODELCI_DEPLOY_SSH_KEY / MODELCI_DEPLOY_SSH_KNOWN_HOSTS
    (file variables), else from ~/.ssh; an unknown host key is refused."""
    import docker

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("ssh://"):
            with _ssh_home():
                c = docker.from_env(timeout=300)
        else:
            # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE replace the engine's CA
            # (DOCKER_CERT_PATH/ca.pem): the engine's own CA must win, so the session ignores them.
            with _without_env("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
                c = docker.from_env(timeout=300)
            c.api.trust_env = False
        c.ping()
        return c
    except Exception as exc:  # noqa: BLE001 - docker raises many kinds
        detail = log.mask(str(exc)).splitlines()[-1][:200] if str(exc) else ""
        raise ModelCIError(f"cannot reach the Docker engine at {host} ({exc.__class__.__name__}: {detail}); "
                           "check DOCKER_HOST and its credentials (docs/deploy-targets.md)") from None


@contextlib.contextmanager
def _without_env(*names: str) -> Iterator[None]:
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextlib.contextmanager
def _ssh_home() -> Iterator[None]:
    """docker's ssh transport reads ~/.ssh/config and ~/.ssh/known_hosts while it connects: give it
    a private HOME holding the key and known_hosts files named by the settings."""
    from .settings import deploy as _declared  # noqa: F401 - declares the variables read below
    from .settings import get

    key, known = get("MODELCI_DEPLOY_SSH_KEY"), get("MODELCI_DEPLOY_SSH_KNOWN_HOSTS")
    if not (key or known):
        yield
        return
    home = Path(tempfile.mkdtemp(prefix="modelci-ssh-"))
    _SSH_HOME.append(str(home))
    atexit.register(shutil.rmtree, str(home), True)
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    if known:
        shutil.copyfile(known, ssh / "known_hosts")
    if key:
        shutil.copyfile(key, ssh / "id_deploy")
        (ssh / "id_deploy").chmod(0o600)
        (ssh / "config").write_text(f"Host *\n  IdentityFile {ssh / 'id_deploy'}\n")
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old


def engine_identity(c: Any) -> dict[str, Any]:
    """Which engine answered (logged by deploys: the name, data root and labels of the target)."""
    info = c.info()
    return {"name": info.get("Name"), "root": info.get("DockerRootDir"), "labels": info.get("Labels") or [],
            "version": info.get("ServerVersion"), "time": info.get("SystemTime")}


def registry_credentials() -> tuple[str | None, str | None]:
    from .settings import env, get
    from .settings.common import REGISTRY_PASSWORD, REGISTRY_USER

    user = get(REGISTRY_USER.name) or env("CI_REGISTRY_USER")
    password = get(REGISTRY_PASSWORD.name) or env("CI_REGISTRY_PASSWORD")
    log.add_secret(password)
    return user or None, password or None


def login(c: Any, registry: str) -> dict[str, str] | None:
    """Log in to the registry when credentials are set (the password goes through the API, never
    a command line or the log). Returns the auth_config for push/pull."""
    user, password = registry_credentials()
    if not (user and password):
        return None
    try:
        c.login(username=user, password=password, registry=registry, reauth=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelCIError(f"registry {registry}: login as {user} failed "
                           f"({log.mask(str(exc))[:200]}); check CI_REGISTRY_USER/CI_REGISTRY_PASSWORD") from None
    return {"username": user, "password": password}


def stream_push(c: Any, repository: str, tag: str, auth_config: dict[str, str] | None) -> int:
    """Push with progress on stderr; returns bytes reported as pushed. Raises on error."""
    pushed: dict[str, int] = {}
    for chunk in c.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth_config):
        if "error" in chunk:
            raise ModelCIError(f"push {repository}:{tag} failed: {log.mask(chunk['error'])}")
        status = chunk.get("status", "")
        if status in ("Pushed", "Layer already exists", "Mounted from"):
            log.info(f"  {chunk.get('id', '')}: {status}")
        detail = chunk.get("progressDetail") or {}
        if chunk.get("id") and detail.get("total"):
            pushed[chunk["id"]] = max(pushed.get(chunk["id"], 0), int(detail.get("total", 0)))
    return sum(pushed.values())


def pull(c: Any, ref: str, auth_config: dict[str, str] | None) -> Any:
    try:
        for chunk in c.api.pull(ref, stream=True, decode=True, auth_config=auth_config):
            if "error" in chunk:
                raise ModelCIError(f"pull {ref} failed: {log.mask(chunk['error'])}")
        return c.images.get(ref)
    except ModelCIError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ModelCIError(f"pull {ref} failed ({log.mask(str(exc))[:200]}); check the image exists and "
                           "the registry credentials") from None


def extract_dir(c: Any, image_ref: str, src: str, dest: str | Path) -> Path:
    """Copy a directory out of an image without running it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    container = c.containers.create(image_ref, command=["true"])
    try:
        bits, _ = container.get_archive(src)
        buf = io.BytesIO(b"".join(bits))
        with tarfile.open(fileobj=buf) as tar:
            base = Path(src).name
            for member in tar.getmembers():
                rel = Path(member.name)
                if rel.parts and rel.parts[0] == base:
                    rel = Path(*rel.parts[1:]) if len(rel.parts) > 1 else Path(".")
                if member.isfile() and ".." not in rel.parts:
                    target = dest / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fh = tar.extractfile(member)
                    assert fh is not None
                    target.write_bytes(fh.read())
    finally:
        container.remove(force=True)
    return dest


def write_dotenv(path: str | Path, values: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    os.replace(tmp, path)


def read_dotenv(path: str | Path) -> dict[str, str]:
    """A dotenv report as write_dotenv writes it (KEY=VALUE lines; surrounding quotes dropped)."""
    values: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def image_labels(c: Any, ref: str) -> dict[str, str]:
    return dict(c.images.get(ref).attrs.get("Config", {}).get("Labels") or {})


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)
