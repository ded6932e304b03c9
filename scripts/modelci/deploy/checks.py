"""Readiness and the smoke test of a new backend, run ON the target (inside the backend container)."""
from __future__ import annotations

import json
import time
from typing import Any

from .. import log
from ..errors import ModelCIError
from .target import DockerTarget


def wait_ready(t: DockerTarget, backend: Any, port: int, timeout: float) -> None:
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    deadline, next_note, last = time.time() + timeout, time.time() + 5, ""
    while time.time() < deadline:
        backend.reload()
        restarts = int(backend.attrs.get("RestartCount") or 0)
        if backend.status in ("exited", "dead", "restarting") or restarts:
            logs = backend.logs(tail=15).decode(errors="replace").strip().splitlines()
            raise ModelCIError(f"container {backend.name} exited before becoming ready "
                               f"(exit {backend.attrs['State'].get('ExitCode')}, {restarts} restarts): "
                               f"{' | '.join(logs[-3:]) or 'no output'}")
        if backend.status == "running":
            status, body = t.http(backend, "GET", url, timeout=2)
            if status == 200:
                return
            last = f"HTTP {status}" if status else body[:80]
        if time.time() > next_note:
            log.info(f"  waiting for {url} on the target ({last}, {deadline - time.time():.0f}s left)")
            next_note = time.time() + 5
        time.sleep(0.3)
    raise ModelCIError(f"{url} on the target not ready after {timeout:.0f}s (last: {last})")


def _values_match(expected: Any, got: Any) -> bool:
    if isinstance(expected, float) or isinstance(got, float):
        try:
            return abs(float(expected) - float(got)) <= 1e-6 * max(1.0, abs(float(expected)))
        except (TypeError, ValueError):
            return False
    return bool(expected == got)


def lineage(t: DockerTarget, via: Any, base_url: str) -> dict[str, Any]:
    status, body = t.http(via, "GET", f"{base_url}/lineage", timeout=10)
    if status != 200:
        raise ModelCIError(f"{base_url}/lineage on the target answered {status or body}")
    try:
        return dict(json.loads(body))
    except ValueError:
        raise ModelCIError(f"{base_url}/lineage on the target answered no JSON: {body[:120]}") from None


def smoke_test(t: DockerTarget, backend: Any, base_url: str, smoke: dict[str, Any] | None,
               expected_sha: str) -> dict[str, Any]:
    got_lineage = lineage(t, backend, base_url)
    if got_lineage.get("sha256") != expected_sha:
        raise ModelCIError(f"smoke test: {base_url}/lineage reports model sha256 "
                           f"{str(got_lineage.get('sha256'))[:12]}…, the image label says {expected_sha[:12]}…")
    if not smoke:
        return {"rows": 0, "lineage": got_lineage}
    inputs, expected = smoke.get("inputs") or [], smoke.get("expected") or []
    status, body = t.http(backend, "POST", f"{base_url}/predict", json.dumps(inputs), timeout=30)
    if status != 200:
        raise ModelCIError(f"smoke test: POST {base_url}/predict answered HTTP {status}: {body[:200]}")
    got = json.loads(body).get("predictions")
    if not isinstance(got, list) or len(got) != len(expected):
        raise ModelCIError(f"smoke test: expected {len(expected)} predictions, got {got!r:.200}")
    bad = [i for i, (e, g) in enumerate(zip(expected, got)) if not _values_match(e, g)]
    if bad:
        i = bad[0]
        raise ModelCIError(f"smoke test: {len(bad)}/{len(expected)} predictions differ from smoke.json "
                           f"(row {i}: expected {expected[i]!r}, got {got[i]!r}); not switching traffic")
    return {"rows": len(expected), "lineage": got_lineage}
