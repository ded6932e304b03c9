"""Image references, semver model versions and the Docker Registry HTTP API v2 (tags list)."""
from __future__ import annotations

import re
from dataclasses import dataclass

import requests

from .errors import ModelCIError

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def parse_semver(tag: str) -> tuple[int, int, int] | None:
    m = SEMVER.match(tag)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def next_version(existing_tags: list[str], major: int, *, same_model_as: str | None = None) -> str:
    """Next model version (docs/design.md#versions-images-digests): a new model gets major.(max minor + 1).0 (major.0.0 first);
    an image rebuilt around the same model (`same_model_as` = its version) gets the next patch."""
    versions = [v for v in (parse_semver(t) for t in existing_tags) if v]
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

    def _get(self, url: str) -> requests.Response:
        try:
            resp = self.session.get(url, auth=self.auth, timeout=self.timeout)
            if resp.status_code == 401 and "bearer" in resp.headers.get("WWW-Authenticate", "").lower():
                params = dict(re.findall(r'(\w+)="([^"]*)"', resp.headers["WWW-Authenticate"]))
                tok = self.session.get(params.pop("realm"), params=params, auth=self.auth,
                                       timeout=self.timeout)
                tok.raise_for_status()
                token = tok.json().get("token") or tok.json().get("access_token")
                resp = self.session.get(url, headers={"Authorization": f"Bearer {token}"},
                                        timeout=self.timeout)
        except requests.RequestException as exc:
            raise ModelCIError(f"registry {self.base}: cannot connect ({exc.__class__.__name__}); "
                               "check CI_REGISTRY and that the registry is up") from None
        return resp

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
