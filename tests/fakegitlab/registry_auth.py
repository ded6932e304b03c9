"""GitLab's container registry token service: GET /jwt/auth (outside /api/v4), as GitLab answers a
Docker registry's `Bearer realm=…/jwt/auth` challenge.

A real CNCF distribution registry configured with `auth: token` (realm = this route, service
`container_registry`, the issuer and the certificate of `configure()`) sends clients here. GitLab's
behaviour, as its container registry docs and the distribution token spec describe it:

  - HTTP Basic credentials: `gitlab-ci-token` + a CI job token (pull and push on the job's own
    project; the fake's job tokens carry `projects`, None = every project), or any user name + a
    personal/project access token (`read_registry` pulls, `write_registry` pushes, `api` does both),
    limited to the token's projects and its role (Reporter pulls, Developer pushes);
  - wrong or unknown credentials: 401 with GitLab's `{"errors": [{"code": "UNAUTHORIZED", …}]}`;
    no credentials: an anonymous token with no access (the registry then refuses the request);
  - `service` must be `container_registry` (else 401); each `scope=repository:<path>:<actions>` gets
    the actions the credentials allow on the project owning <path> (the longest project path that is
    <path> or a prefix of it followed by "/"), possibly none;
  - the answer is `{"token": JWT, "access_token": JWT, "expires_in": 300, "issued_at": …}`: RS256,
    header `kid` = the libtrust key id of the signing key (how GitLab signs and how the registry
    finds the key in its `rootcertbundle`), claims iss, sub, aud=service, iat, nbf, exp, jti, access.

Every call is in the fake's request log with its query, so tests can assert what was asked.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from .base import Area, Route
from .http import ROLES, HTTPError, Request

SERVICE = "container_registry"
DENIED = {"errors": [{"code": "UNAUTHORIZED", "message": "HTTP Basic: Access denied. If a password was "
                      "provided for Git authentication, the password was incorrect or you're required to "
                      "use a token instead of a password."}]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_kid(public_key: Any) -> str:
    """The key id distribution's libtrust gives a public key: base32 of the first 240 bits of the
    sha256 of its DER (SubjectPublicKeyInfo), in 12 groups of 4 joined by ':'."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


def signing_key(directory: Any, common_name: str = "gitlab-registry-auth") -> tuple[Any, str]:
    """A new RSA key and its self-signed certificate (PEM written to directory/registry-auth.crt, the
    registry's rootcertbundle). Returns (private key, certificate path)."""
    import datetime
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = Path(directory) / "registry-auth.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, str(path)


class RegistryAuth(Area):
    PREFIX: ClassVar[str] = ""
    STATE: ClassVar[tuple[str, ...]] = ("registry_tokens",)

    def __init__(self, fake: Any):
        super().__init__(fake)
        self.key: Any = None
        self.issuer = "gitlab-issuer"
        self.registry_tokens: list[dict[str, Any]] = []  # the claims of every token issued

    def configure(self, key: Any, issuer: str = "gitlab-issuer") -> None:
        self.key, self.issuer = key, issuer

    def routes(self) -> list[Route]:
        return [(r"/jwt/auth", {"GET": self.jwt_auth}, "jwt_auth")]

    # ---- who may do what ----------------------------------------------------------------------------
    def _credentials(self, req: Request, entry: dict[str, Any]) -> dict[str, Any] | None:
        header = req.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise HTTPError(401, DENIED) from None
        info = self.fake.tokens.get(password)
        entry["auth"] = f"basic:{user}"
        if not info or (info["kind"] == "job") != (user == "gitlab-ci-token"):
            raise HTTPError(401, DENIED)
        return dict(info, user=user)

    def _allowed(self, info: dict[str, Any] | None, project: dict[str, Any] | None) -> set[str]:
        if info is None or project is None:
            return set()
        if info.get("projects") is not None and project["id"] not in info["projects"]:
            return set()
        role = ROLES.get(info.get("role", "maintainer"), 0)
        if info["kind"] == "job":
            return {"pull", "push"} if role >= ROLES["developer"] else {"pull"}
        scopes, actions = set(info.get("scopes") or ()), set()
        if scopes & {"api", "read_registry", "write_registry"} and role >= ROLES["reporter"]:
            actions.add("pull")
        if scopes & {"api", "write_registry"} and role >= ROLES["developer"]:
            actions.add("push")
        return actions

    def _project_of(self, path: str) -> dict[str, Any] | None:
        owners = [p for p in self.fake.projects.values()
                  if path == p["path_with_namespace"] or path.startswith(p["path_with_namespace"] + "/")]
        return max(owners, key=lambda p: len(p["path_with_namespace"]), default=None)

    # ---- the route ----------------------------------------------------------------------------------
    def jwt_auth(self, req: Request, entry: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        if self.key is None:
            raise HTTPError(404, {"message": "404 Not Found"})  # no container registry configured
        info = self._credentials(req, entry)
        if req.query.get("service") != SERVICE:
            raise HTTPError(401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid service"}]})
        access = []
        for scope in parse_qs(urlsplit(req.handler.path).query).get("scope", []):  # one per repository
            kind, _, rest = scope.partition(":")
            path, _, actions = rest.rpartition(":")
            if kind != "repository" or not path:
                continue
            granted = self._allowed(info, self._project_of(path)) & set(actions.split(","))
            access.append({"type": "repository", "name": path, "actions": sorted(granted)})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": (info or {}).get("user", "anonymous"), "aud": SERVICE,
                  "iat": now, "nbf": now - 5, "exp": now + 300, "jti": secrets.token_hex(16), "access": access}
        self.registry_tokens.append(claims)
        token = self._sign(claims)
        return 200, {}, {"token": token, "access_token": token, "expires_in": 300,
                         "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}

    def _sign(self, claims: dict[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"typ": "JWT", "alg": "RS256", "kid": libtrust_kid(self.key.public_key())}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"
