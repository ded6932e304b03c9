"""The environment's deploy lock, held ON the target (docs/deploy-targets.md#the-lock).

Deploys to one environment serialise across runners and hosts, in addition to GitLab's
`resource_group`: the lock is a container with a fixed name (`modelci-<ns>-<env>-lock`), which the
engine creates atomically (a second create of that name fails with 409). Container labels cannot
change, so the heartbeat is a file in the lock container's tmpfs that the live holder rewrites
through `exec` every few seconds. A waiter reads its age on the target's own clock and takes the
lock over once the heartbeat is older than `stale` seconds (a holder killed with SIGKILL stops
beating). The holder removes the lock by id, never by name, so it never removes a successor's.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from .. import log
from ..errors import ModelCIError
from .target import HARDENING, LABEL_ROLE, DockerTarget

BEAT = "/tmp/modelci-heartbeat"
HOLD_SCRIPT = f"import time\nopen({BEAT!r}, 'w').close()\nwhile True: time.sleep(3600)\n"
AGE_SCRIPT = f"import os, time\nprint(time.time() - os.path.getmtime({BEAT!r}))\n"
BEAT_SCRIPT = f"import os\nos.utime({BEAT!r})\n"


class TargetLock:
    def __init__(self, target: DockerTarget, image: str, *, stale: float, timeout: float):
        self.t, self.image, self.stale, self.timeout = target, image, stale, timeout
        self.ctr: Any = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _holder(self) -> str:
        return (f"job {os.environ.get('CI_JOB_ID', '-')} pipeline {os.environ.get('CI_PIPELINE_ID', '-')} "
                f"on {socket.gethostname()} pid {os.getpid()}")

    def _try_create(self) -> bool:
        import docker

        try:
            ctr = self.t.c.containers.create(
                self.image, ["python3", "-c", HOLD_SCRIPT], name=self.t.lock_name, network_mode="none",
                labels={**self.t.labels, LABEL_ROLE: "lock", "io.modelci.lock.holder": self._holder()},
                tmpfs={"/tmp": "rw,size=1m,mode=1777"}, mem_limit="64m", pids_limit=8,
                healthcheck={"test": ["NONE"]}, **HARDENING)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                return False
            raise
        self.ctr = ctr
        ctr.start()
        return True

    def age(self, ctr: Any) -> float:
        """Seconds since the holder's last heartbeat, on the target's clock (infinite if the lock
        container is not running: its holder, or the engine, is gone)."""
        ctr.reload()
        if ctr.status != "running":
            return float("inf") if ctr.status != "created" else 0.0
        code, out = DockerTarget.exec(ctr, ["python3", "-c", AGE_SCRIPT])
        if code != 0:
            return 0.0  # just started, no heartbeat file yet
        try:
            return float(out.strip())
        except ValueError:
            return 0.0

    def _beat(self) -> None:
        interval = max(0.5, self.stale / 6)
        while not self._stop.wait(interval):
            try:
                code, _ = DockerTarget.exec(self.ctr, ["python3", "-c", BEAT_SCRIPT])
                current = self.t.get(self.t.lock_name)
                if code != 0 or current is None or current.id != self.ctr.id:
                    raise RuntimeError("lock container replaced or gone")
            except Exception as exc:  # noqa: BLE001 - any failure means the lock may be lost
                log.warn(f"deploy lock {self.t.lock_name}: heartbeat failed ({exc.__class__.__name__})")
                self.lost.set()
                return

    def check(self) -> None:
        if self.lost.is_set():
            raise ModelCIError(f"lost the deploy lock {self.t.lock_name} (its heartbeat failed); not switching")

    @contextlib.contextmanager
    def held(self) -> Iterator[float]:
        import docker

        start, next_note = time.time(), 0.0
        while not self._try_create():
            try:
                ctr = self.t.c.containers.get(self.t.lock_name)
            except docker.errors.NotFound:
                continue
            age, holder = self.age(ctr), ctr.labels.get("io.modelci.lock.holder", "?")
            if age > self.stale:
                log.warn(f"deploy lock {self.t.lock_name} held by {holder} has no heartbeat for "
                         f"{age:.0f}s (> {self.stale:.0f}s): taking it over")
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    ctr.remove(force=True)  # by id: a successor's lock has another id
                continue
            if time.time() - start > self.timeout:
                raise ModelCIError(f"deploy to {self.t.env}: the lock {self.t.lock_name} is still held by "
                                   f"{holder} after {self.timeout:.0f}s; check that deploy")
            if time.time() >= next_note:
                log.info(f"deploy to {self.t.env}: waiting for the lock {self.t.lock_name} held by {holder} "
                         f"(heartbeat {age:.0f}s ago)")
                next_note = time.time() + 15
            time.sleep(1.0)
        waited = time.time() - start
        log.info(f"deploy to {self.t.env}: lock {self.t.lock_name} acquired after {waited:.1f}s")
        self._thread = threading.Thread(target=self._beat, daemon=True, name="modelci-lock-heartbeat")
        self._thread.start()
        try:
            yield waited
        finally:
            self._stop.set()
            if self._thread:
                self._thread.join(10)
            with contextlib.suppress(Exception):
                self.ctr.remove(force=True)
