"""Several worker processes behind one port: CPU count, shared readiness, metrics merged across workers.

`python -m app` forks N workers (app/__main__.py) that share the listening socket. Each worker loads
the model itself (after its sha256 check). What the workers share:
  * readiness: one byte per worker in an anonymous shared mapping made before the fork; the server
    is ready only when every byte is 1;
  * metrics and statistics: each worker answers its own snapshot on a unix socket in a private
    run directory; the worker that receives a scrape asks its siblings and merges (counters and
    histograms are summed, so every request is counted once and the drift histograms are whole).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import mmap
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson


def configure_logging() -> None:
    """The app's log format, for the supervisor and every worker (MODELCI_LOG_LEVEL, default INFO)."""
    root = logging.getLogger("modelci")
    if not root.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)
        root.setLevel(os.environ.get("MODELCI_LOG_LEVEL", "INFO").upper())

log = logging.getLogger("modelci.serving")

# Gauges that must not be summed across workers: how to combine them instead.
GAUGE_RULES = {"modelci_model_ready": min, "modelci_model_info": max, "modelci_model_load_seconds": max}


def available_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (v2 cpu.max or v1
    cpu.cfs_quota_us / cpu.cfs_period_us), rounded up, at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    root = Path(cgroup_root)
    quota = period = None
    with contextlib.suppress(OSError, ValueError):
        fields = (root / "cpu.max").read_text().split()
        if fields and fields[0] != "max":
            quota, period = int(fields[0]), int(fields[1])
    if quota is None:
        with contextlib.suppress(OSError, ValueError):
            q = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
            p = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            if q > 0 and p > 0:
                quota, period = q, p
    if quota is not None and period:
        n = min(n, max(1, math.ceil(quota / period)))
    return max(1, n)


class WorkerGroup:
    """What worker `index` of `size` knows about its siblings."""

    def __init__(self, size: int, rundir: str, flags: mmap.mmap | None = None, index: int = 0) -> None:
        self.size = size
        self.rundir = rundir
        self.flags = flags if flags is not None else mmap.mmap(-1, max(size, 1))
        self.index = index

    def socket_path(self, i: int) -> str:
        return os.path.join(self.rundir, f"worker-{i}.sock")

    def set_ready(self, ready: bool, index: int | None = None) -> None:
        self.flags[self.index if index is None else index] = 1 if ready else 0

    def all_ready(self) -> bool:
        return all(self.flags[i] == 1 for i in range(self.size))

    async def serve(self, answer: Callable[[bytes], Awaitable[bytes]]) -> asyncio.AbstractServer:
        """Answer sibling requests (one line: the topic) with answer(topic)."""
        path = self.socket_path(self.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                topic = (await asyncio.wait_for(reader.readline(), 5)).strip()
                writer.write(await answer(topic))
                await writer.drain()
            except Exception:  # noqa: BLE001 - a sibling's failed scrape must not hurt this worker
                log.exception("answering a sibling worker")
            finally:
                writer.close()

        return await asyncio.start_unix_server(handle, path=path)

    async def gather(self, topic: bytes, own: Any, timeout: float = 5.0) -> list[Any]:
        """own + every sibling's answer to `topic` (siblings that do not answer are skipped, logged)."""

        async def ask(i: int) -> Any:
            reader, writer = await asyncio.open_unix_connection(self.socket_path(i))
            try:
                writer.write(topic + b"\n")
                await writer.drain()
                return orjson.loads(await reader.read())
            finally:
                writer.close()

        others = [i for i in range(self.size) if i != self.index]
        results = await asyncio.gather(*(asyncio.wait_for(ask(i), timeout) for i in others),
                                       return_exceptions=True)
        out = [own]
        for i, r in zip(others, results):
            if isinstance(r, BaseException):
                log.warning("worker %d did not answer a %s request (%s); its share is missing",
                            i, topic.decode(), type(r).__name__)
            else:
                out.append(r)
        return out


# --------------------------------------------------------------------------- metric snapshots
def snapshot(registry: Any) -> list[Any]:
    """A registry's samples as plain lists: [name, type, help, unit, [[sample, labels, value], ...]]."""
    return [[f.name, f.type, f.documentation, f.unit, [[s.name, s.labels, s.value] for s in f.samples]]
            for f in registry.collect()]


def _le(labels: dict[str, str]) -> float:
    le = labels.get("le")
    return math.inf if le in (None, "+Inf") else float(le)  # type: ignore[arg-type]


def merge(snapshots: Iterable[list[Any]]) -> list[Any]:
    """Merge worker snapshots: sums, except GAUGE_RULES and `_created` timestamps (earliest)."""
    fams: dict[str, tuple[str, str, str, dict[tuple[Any, ...], list[Any]]]] = {}
    for snap in snapshots:
        for name, typ, doc, unit, samples in snap:
            fam = fams.setdefault(name, (typ, doc, unit, {}))
            rule = GAUGE_RULES.get(name)
            table = fam[3]
            for sname, labels, value in samples:
                value = math.nan if value is None else float(value)
                key = (sname, tuple(sorted(labels.items())))
                cur = table.get(key)
                if cur is None:
                    table[key] = [sname, labels, value]
                elif sname.endswith("_created"):
                    cur[2] = min(cur[2], value)
                elif rule is not None:
                    cur[2] = rule(cur[2], value)
                else:
                    cur[2] += value
    out = []
    for name, (typ, doc, unit, table) in fams.items():
        samples = list(table.values())
        if typ in ("histogram", "gaugehistogram", "summary"):
            # keep each label set's samples together, buckets in ascending order
            order: dict[tuple[Any, ...], int] = {}
            for s in samples:
                order.setdefault(tuple(sorted((k, v) for k, v in s[1].items() if k != "le")), len(order))
            samples.sort(key=lambda s: (order[tuple(sorted((k, v) for k, v in s[1].items() if k != "le"))],
                                        not s[0].endswith("_bucket"), _le(s[1])))
        out.append([name, typ, doc, unit, samples])
    return out


def render(merged: list[Any]) -> bytes:
    """Prometheus text format of merged snapshots."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import Metric

    class _Merged:
        def collect(self) -> Iterable[Any]:
            for name, typ, doc, unit, samples in merged:
                m = Metric(name, doc, typ, unit)
                for sname, labels, value in samples:
                    m.add_sample(sname, labels, value)
                yield m

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Merged())  # type: ignore[arg-type]
    return generate_latest(reg)
