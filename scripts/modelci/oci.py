"""Image references, semver model versions and the Docker Registry HTTP API v2 (tags list)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import requests

from .errors import ModelCIError

CLAIM = "-claim-"  # X.Y.Z-claim-<pipeline>: a pipeline's claim on version X.Y.Z (push_version)
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def parse_semver(tag: str) -> tuple[int, int, int] | None:
    m = SEMVER.match(tag)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def claim_owner() -> str:
    """Who claims a version: this pipeline (CI_PIPELINE_ID), so that a retried build job of the same
    pipeline resumes its own claim instead of minting the next version; a random id outside CI."""
    import secrets

    return os.environ.get("CI_PIPELINE_ID") or f"local{secrets.token_hex(4)}"


def next_version(existing_tags: list[str], major: int, *, same_model_as: str | None = None,
                 owner: str | None = None) -> str:
    """Next model version (docs/design.md#versions-images-digests): a new model gets major.(max minor + 1).0 (major.0.0 first);
    an image rebuilt around the same model (`same_model_as` = its version) gets the next patch.
    A version `owner` (this pipeline) already claimed is offered again: the build job was retried."""
    own = [v for v in (parse_semver(t.split(CLAIM, 1)[0]) for t in existing_tags
                       if owner and t.endswith(CLAIM + owner)) if v]
    if own:
        top = max(own)
        return f"{top[0]}.{top[1]}.{top[2]}"
    # a version claimed by a build that never finished is taken too (push_version: no tag is reused)
    versions = [v for v in (parse_semver(t.split(CLAIM, 1)[0]) for t in existing_tags) if v]
    if same_model_as is not None:
        base = parse_semver(same_model_as)
        if base is None:
            raise ModelCIError(f"champion version {same_model_as!r} is not semver X.Y.Z; "
                               "retrain with FORCE_RETRAIN=true to get a versioned model")
        patches = [v[2] for v in versions if v[:2] == base[:2]] + [base[2]]
        return f"{base[0]}.{base[1]}.{max(patches) + 1}"
    minors = [v[1] for v in versions if v[0] == major]
    return f"{major}.{max(minors) + 1 if minors else 0}.0"


@dataclass(frozen=True)
class ImageRepo:
    """`registry/path` as in `127.0.0.1:5000/group/project/serving`."""

    registry: str
    path: str

    @classmethod
    def parse(cls, ref: str) -> ImageRepo:
        ref = ref.strip()
        if not ref or "@" in ref or ref.rsplit("/", 1)[-1].count(":"):
            raise ModelCIError(f"image repository {ref!r} must look like REGISTRY/PATH without tag or "
                               "digest (e.g. $CI_REGISTRY_IMAGE/serving); fix the `image` input")
        first, _, rest = ref.partition("/")
        if not rest or not ("." in first or ":" in first or first == "localhost"):
            raise ModelCIError(f"image repository {ref!r} has no registry host; use e.g. "
                               "$CI_REGISTRY_IMAGE/serving")
        return cls(first, rest)

    def __str__(self) -> str:
        return f"{self.registry}/{self.path}"

    def tag(self, tag: str) -> str:
        return f"{self}:{tag}"


class RegistryClient:
    """Just enough of the registry v2 API: list tags, with basic auth or a bearer token challenge."""

    def __init__(self, registry: str, username: str | None = None, password: str | None = None,
                 timeout: float = 10.0):
        host = registry
        scheme = "http" if host.startswith(("127.", "localhost", "[::1]")) else "https"
        self.base = f"{scheme}://{host}"
        self.auth = (username, password) if username and password else None
        self.timeout = timeout
        self.session = requests.Session()
        self._tokens: dict[str, tuple[str, float]] = {}  # challenge -> (bearer token, when fetched)

    def _get(self, url: str, headers: dict[str, str] | None = None, timeout: float | None = None
             ) -> requests.Response:
        """GET with basic auth, answering a bearer token challenge (GitLab's registry) once."""
        headers, timeout = headers or {}, timeout or self.timeout
        try:
            resp = self.session.get(url, auth=self.auth, timeout=timeout, headers=headers)
            if resp.status_code == 401 and "bearer" in resp.headers.get("WWW-Authenticate", "").lower():
                token = self._bearer_token(resp.headers["WWW-Authenticate"])
                resp = self.session.get(url, headers={**headers, "Authorization": f"Bearer {token}"},
                                        timeout=timeout)
        except requests.RequestException as exc:
            raise ModelCIError(f"registry {self.base}: cannot connect ({exc.__class__.__name__}); "
                               "check CI_REGISTRY and that the registry is up") from None
        return resp

    def _bearer_token(self, challenge: str) -> str:
        """A token from the registry's token service (GitLab: <gitlab>/jwt/auth), asked with the scope
        the registry's challenge names and the registry credentials (HTTP Basic)."""
        import time

        cached = self._tokens.get(challenge)
        if cached and time.monotonic() - cached[1] < 60:  # GitLab's tokens last 5 minutes at least
            return cached[0]
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise ModelCIError(f"registry {self.base}: its auth challenge names no token service URL (realm)")
        tok = self.session.get(realm, params=params, auth=self.auth, timeout=self.timeout)
        if tok.status_code in (401, 403):
            raise ModelCIError(f"registry {self.base}: its token service {realm} refused the credentials "
                               f"(HTTP {tok.status_code}); check CI_REGISTRY_USER/CI_REGISTRY_PASSWORD")
        try:
            body = tok.json() if tok.status_code < 400 else {}
        except ValueError:
            body = {}
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise ModelCIError(f"registry {self.base}: its token service {realm} answered HTTP {tok.status_code} "
                               "without a token; check the registry's auth set-up")
        self._tokens[challenge] = (str(token), time.monotonic())
        return str(token)

    def tags(self, path: str) -> list[str]:
        tags: list[str] = []
        url: str | None = f"{self.base}/v2/{path}/tags/list?n=1000"
        while url:
            resp = self._get(url)
            if resp.status_code == 404:
                return tags  # repository does not exist yet: no versions
            if resp.status_code in (401, 403):
                raise ModelCIError(f"registry {self.base}: {resp.status_code} listing {path}; check "
                                   "CI_REGISTRY_USER/CI_REGISTRY_PASSWORD (read_registry scope)")
            if resp.status_code >= 400:
                raise ModelCIError(f"registry {self.base}: HTTP {resp.status_code} listing {path}")
            tags.extend(resp.json().get("tags") or [])
            link = resp.headers.get("Link", "")
            m = re.search(r"<([^>]+)>;\s*rel=\"next\"", link)
            url = f"{self.base}{m.group(1)}" if m else None
        return tags


# ---- content-addressed reads (docs/design.md#versions-images-digests) -----------------------------
# Every byte read below is checked against the digest that names it, so the registry (or anyone who
# can push to it) cannot substitute content for a digest that came from a trusted record.
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
MODEL_LABEL = "io.modelci.model.sha256"
REVISION_LABEL = "org.opencontainers.image.revision"
MODEL_PATH = "app/artifact"  # where the serving Dockerfile copies the model, in its last layer


def split_digest_ref(ref: str) -> tuple[ImageRepo, str]:
    """`REGISTRY/PATH@sha256:…` -> (repo, digest); anything else is a one-line error."""
    repo, sep, digest = ref.partition("@")
    if not sep or not DIGEST_RE.match(digest):
        raise ModelCIError(f"image {ref!r} is not pinned by digest (REGISTRY/PATH@sha256:<64 hex>)")
    return ImageRepo.parse(repo.rsplit(":", 1)[0] if repo.rsplit("/", 1)[-1].count(":") else repo), digest


def _sha256(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


class ImageReader(RegistryClient):
    """Reads one image's manifest, config and layers by digest, verifying every digest."""

    def _blob_get(self, url: str, accept: str | None = None) -> bytes:
        resp = self._get(url, {"Accept": accept} if accept else {}, max(self.timeout, 60))
        if resp.status_code >= 400:
            raise ModelCIError(f"registry {self.base}: HTTP {resp.status_code} reading {url.split('/v2/')[-1]}")
        return resp.content

    def manifest(self, path: str, digest: str) -> dict:
        import json

        body = self._blob_get(f"{self.base}/v2/{path}/manifests/{digest}", MANIFEST_TYPES)
        if _sha256(body) != digest:
            raise ModelCIError(f"registry {self.base}: manifest of {path}@{digest[:19]}… does not hash to "
                               "its digest; refusing it")
        data = json.loads(body)
        if not isinstance(data, dict) or not data.get("layers") or not data.get("config"):
            raise ModelCIError(f"{path}@{digest[:19]}…: not a single-platform image manifest")
        return data

    def blob(self, path: str, digest: str) -> bytes:
        if not DIGEST_RE.match(str(digest)):
            raise ModelCIError(f"{path}: blob digest {digest!r} is not sha256:<64 hex>")
        body = self._blob_get(f"{self.base}/v2/{path}/blobs/{digest}")
        if _sha256(body) != digest:
            raise ModelCIError(f"registry {self.base}: blob {digest[:19]}… of {path} does not hash to its "
                               "digest; refusing it")
        return body

    def labels(self, path: str, digest: str) -> dict[str, str]:
        import json

        config = json.loads(self.blob(path, self.manifest(path, digest)["config"]["digest"]))
        return dict((config.get("config") or {}).get("Labels") or {})

    def model_layer(self, path: str, digest: str, dest: str | os.PathLike[str]) -> dict[str, str]:
        """Extract the image's last layer (the model directory, MODEL_PATH) into dest; return the
        image's labels. Only regular files under MODEL_PATH are written (no links, no '..')."""
        import gzip
        import io
        import json
        import tarfile
        from pathlib import Path

        manifest = self.manifest(path, digest)
        labels = dict((json.loads(self.blob(path, manifest["config"]["digest"])).get("config") or {})
                      .get("Labels") or {})
        layer = self.blob(path, manifest["layers"][-1]["digest"])
        raw = gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer
        out = Path(dest)
        written = 0
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            for member in tar.getmembers():
                parts = Path(member.name.lstrip("./")).parts
                if len(parts) <= 2 or tuple(parts[:2]) != tuple(MODEL_PATH.split("/")):
                    continue
                rel = Path(*parts[2:])
                if not member.isfile() or ".." in rel.parts or rel.name.startswith(".wh."):
                    continue
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                fh = tar.extractfile(member)
                assert fh is not None
                target.write_bytes(fh.read())
                written += 1
        if not written:
            raise ModelCIError(f"{path}@{digest[:19]}…: the last layer holds no {MODEL_PATH}/ (not a modelci "
                               "serving image)")
        return labels

    def tag_image(self, path: str, tag: str) -> tuple[str, str] | None:
        """(manifest digest, config digest = image id) that `tag` names now, or None when absent."""
        import json
        import time

        url = f"{self.base}/v2/{path}/manifests/{tag}"
        for attempt in range(4):  # a tag being written can answer 5xx for a moment
            resp = self._get(url, {"Accept": MANIFEST_TYPES})  # also behind a token service (GitLab)
            if resp.status_code < 500:
                break
            time.sleep(0.2 * (attempt + 1))
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise ModelCIError(f"registry {self.base}: HTTP {resp.status_code} reading {path}:{tag}")
        body = resp.content
        data = json.loads(body)
        return _sha256(body), str((data.get("config") or {}).get("digest"))


def push_version(c: Any, repo: ImageRepo, version: str, extra_tags: list[str], image: Any,
                 auth: dict[str, str] | None, owner: str | None = None) -> tuple[int, str]:
    """Push `image` as repo:version (and extra_tags) without ever overwriting a version tag
    (docs/design.md#versions-images-digests). Returns (bytes pushed, REPO@sha256:…).

    1. before: the version tag must be absent (or already this very image: a re-run);
    2. claim: push the image as `version-claim-<owner>` (the pipeline), then list tags: any other
       build's claim on the same version fails this build closed. Each build writes its claim before it
       reads, so of two concurrent builds at most one sees no other claim (both may fail; neither
       overwrites);
    3. push the version tag and extra_tags, then verify the version tag names this image.
    A claimed version is never offered to another pipeline (next_version), even when its build failed.
    A retried build job of the same pipeline resumes its claim: when its earlier attempt already pushed
    the version tag (and failed after), that image is kept (same model and commit, checked by label)
    and only the missing tags are pushed, so the version names one image and is pushed once."""
    from . import dockerutil

    user, password = dockerutil.registry_credentials()
    reader = ImageReader(repo.registry, user, password)
    image_id = str(image.id)

    def refuse_other(tag: str, when: str, found: tuple[str, str] | None) -> None:
        if found and found[1] != image_id:
            raise ModelCIError(f"{repo}:{tag}: {when} the tag names another image ({found[0][:19]}…); a "
                               "version tag is never overwritten, re-run the pipeline for the next version")

    claim = f"{version}{CLAIM}{owner or claim_owner()}"
    current, earlier = reader.tag_image(repo.path, version), reader.tag_image(repo.path, claim)
    if current and current[1] != image_id and earlier and earlier[1] == current[1]:
        return 0, _adopt(c, reader, repo, version, current[0], extra_tags, image, auth)
    refuse_other(version, "before the push,", current)
    image.tag(str(repo), tag=claim)
    pushed = dockerutil.stream_push(c, str(repo), claim, auth)
    for tag in reader.tags(repo.path):
        if tag.startswith(version + CLAIM) and tag != claim:
            try:
                other = reader.tag_image(repo.path, tag)
            except ModelCIError:  # unreadable: count it as a competing claim (fail closed)
                other = ("", "")
            if other and other[1] != image_id:
                raise ModelCIError(f"{repo}:{version}: another build claims this version at the same time "
                                   f"({tag}); failing closed without pushing it, re-run the pipeline")
    refuse_other(version, "while claiming it,", reader.tag_image(repo.path, version))
    for tag in [version, *extra_tags]:
        image.tag(str(repo), tag=tag)
        dockerutil.stream_push(c, str(repo), tag, auth)
    after = reader.tag_image(repo.path, version)
    if not after or after[1] != image_id:
        raise ModelCIError(f"{repo}:{version}: after the push the tag names another image; another build "
                           "overwrote it, failing closed (this build's digest is not handed on)")
    return pushed, f"{repo}@{after[0]}"


def _adopt(c: Any, reader: ImageReader, repo: ImageRepo, version: str, digest: str, extra_tags: list[str],
           image: Any, auth: dict[str, str] | None) -> str:
    """This pipeline's earlier build attempt pushed `version` and failed after: keep that image (the
    version is never re-pointed) once its labels show the same model and commit; push the other tags."""
    from . import dockerutil

    theirs, ours = reader.labels(repo.path, digest), dict(getattr(image, "labels", None) or {})
    for label in (MODEL_LABEL, REVISION_LABEL):
        if not theirs.get(label) or theirs.get(label) != ours.get(label):
            raise ModelCIError(f"{repo}:{version}: this pipeline's earlier build pushed an image with another "
                               f"{label} ({str(theirs.get(label))[:12]}…); failing closed, re-run the pipeline")
    ref = f"{repo}@{digest}"
    earlier = dockerutil.pull(c, ref, auth)
    for tag in extra_tags:
        earlier.tag(str(repo), tag=tag)
        dockerutil.stream_push(c, str(repo), tag, auth)
    return ref
