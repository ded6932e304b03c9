"""`python -m app`: serve the model with N worker processes (uvicorn, uvloop + httptools) on one port.

Environment: HOST (default 0.0.0.0), PORT (default 8080), GRPC_PORT (default 8081; 0 turns gRPC off; when
unset and 8081 is taken, gRPC is turned off with a warning; when set and taken, exit 64),
MODELCI_WORKERS (default: the CPUs available to the container: affinity mask and cgroup CPU quota),
MODELCI_MODEL_DIR (default /app/artifact), MODELCI_MODEL_VERSION, MODELCI_MAX_BODY_BYTES,
MODELCI_INLINE_ROWS, MODELCI_MAX_CONCURRENCY, MODELCI_HEADER_TIMEOUT_S (10), MODELCI_BODY_TIMEOUT_S
(30), MODELCI_GRPC_THREADS (8), MODELCI_LOG_LEVEL (INFO), MODELCI_ACCESS_LOG (0; 1 logs every request,
which costs throughput), MODELCI_KEEPALIVE_S (75).

The supervisor (this process) binds the port (one SO_REUSEPORT socket per worker), forks the workers
(each loads and verifies the model itself) and forwards SIGTERM/SIGINT to them. A worker killed by a signal is replaced; a worker that
cannot serve the model (exit status 1) stops them all.
Exit status: 0 after a normal shutdown (SIGTERM/SIGINT), 1 when the model cannot be served
(altered or missing artifact, failing warm-up), 64 for a bad setting.
"""
from __future__ import annotations

import importlib.util
import logging
import mmap
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from .cluster import configure_logging

log = logging.getLogger("modelci.serving")


class Settings:
    def __init__(self) -> None:
        env = os.environ
        self.host = env.get("HOST") or "0.0.0.0"
        self.port = int(env.get("PORT") or 8080)
        self.grpc_port_set = bool((env.get("GRPC_PORT") or "").strip())
        self.grpc_port = int(env.get("GRPC_PORT") or 8081)
        self.keepalive = int(env.get("MODELCI_KEEPALIVE_S") or 75)
        self.header_timeout = float(env.get("MODELCI_HEADER_TIMEOUT_S") or 10)
        self.grpc_threads = int(env.get("MODELCI_GRPC_THREADS") or 8)
        workers = env.get("MODELCI_WORKERS") or ""
        if workers.strip():
            self.workers = int(workers)
            if self.workers < 1:
                raise ValueError(f"MODELCI_WORKERS={workers!r} must be at least 1")
        else:
            from .cluster import available_cpus

            self.workers = available_cpus()


def _bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_worker(cfg: Settings, sock: socket.socket, group: Any) -> int:
    """One worker: the ASGI app on uvicorn with the shared socket, and the gRPC service."""
    import uvicorn

    from .protocol import header_timeout_protocol
    from .server import create_app

    configure_logging()
    exit_code = {"code": 0}
    server: uvicorn.Server | None = None

    def fatal(code: int) -> None:
        exit_code["code"] = code
        if server is not None:
            server.should_exit = True  # polled by uvicorn's main loop; a graceful stop, then exit(code)

    app = create_app(on_fatal=fatal, group=group)
    if cfg.grpc_port:
        from .grpc_service import GrpcService

        grpc_service = GrpcService(app, cfg.host, cfg.grpc_port, cfg.grpc_threads)

        async def start_grpc() -> None:
            try:
                grpc_service.start()
            except Exception as exc:  # noqa: BLE001 - a port that cannot be bound is fatal
                log.error("gRPC: cannot listen on %s:%d (%s)", cfg.host, cfg.grpc_port, exc)
                fatal(64)

        async def stop_grpc() -> None:
            # in a thread: in-flight gRPC calls still need this event loop to finish
            import asyncio

            await asyncio.get_running_loop().run_in_executor(None, grpc_service.stop)

        app.on_startup.append(start_grpc)
        app.on_shutdown.append(stop_grpc)
    httptools = importlib.util.find_spec("httptools") is not None
    config = uvicorn.Config(
        app,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=header_timeout_protocol(cfg.header_timeout) if httptools else "h11",
        lifespan="on",
        access_log=os.environ.get("MODELCI_ACCESS_LOG", "0").strip().lower() in ("1", "true", "yes", "on"),
        log_level=os.environ.get("MODELCI_LOG_LEVEL", "info").lower(),
        timeout_keep_alive=cfg.keepalive,
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if exit_code["code"]:
        return exit_code["code"]
    return 0 if server.started else 1


def main() -> int:
    configure_logging()  # from app.cluster: the supervisor stays light (no numpy/scikit-learn)
    try:
        cfg = Settings()
    except ValueError as exc:
        print(f"environment: HOST/PORT/GRPC_PORT/MODELCI_*: {exc}", file=sys.stderr)
        return 64
    try:
        # One listening socket per worker in one SO_REUSEPORT group: the kernel spreads connections
        # over the workers evenly (with one shared socket, the first worker to wake takes a burst of
        # connections). An exclusive bind first makes sure no other server holds the port.
        if cfg.workers > 1:
            _bind(cfg.host, cfg.port).close()
        socks = [_bind(cfg.host, cfg.port, reuse_port=cfg.workers > 1) for _ in range(cfg.workers)]
    except OSError as exc:
        print(f"cannot listen on {cfg.host}:{cfg.port}: {exc}", file=sys.stderr)
        return 64
    if cfg.grpc_port:
        # The workers bind the gRPC port with SO_REUSEPORT (the kernel spreads connections over
        # them); refuse a port another server already listens on rather than silently sharing it.
        try:
            _bind(cfg.host, cfg.grpc_port).close()
        except OSError as exc:
            if cfg.grpc_port_set:
                print(f"cannot listen on {cfg.host}:{cfg.grpc_port} (GRPC_PORT; 0 turns gRPC off): {exc}",
                      file=sys.stderr)
                return 64
            # the default port is taken (e.g. two environments on one host network): serve REST only
            log.warning("gRPC is OFF: the default GRPC_PORT %d is in use (%s); set GRPC_PORT to a free "
                        "port for each server on this host", cfg.grpc_port, exc)
            cfg.grpc_port = 0
    from .cluster import WorkerGroup

    rundir = tempfile.mkdtemp(prefix="modelci-workers-")
    flags = mmap.mmap(-1, cfg.workers)  # shared with the forked workers: one ready byte each
    log.info("serving %s on http://%s:%d%s with %d worker(s)", os.environ.get("MODELCI_MODEL_DIR") or
             "/app/artifact", cfg.host, cfg.port, f" and gRPC on port {cfg.grpc_port}" if cfg.grpc_port
             else "", cfg.workers)
    try:
        return _supervise(cfg, socks, rundir, flags, WorkerGroup)
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


def _supervise(cfg: Settings, socks: list[socket.socket], rundir: str, flags: mmap.mmap,
               group_cls: Any) -> int:
    children: dict[int, int] = {}  # pid -> worker index
    stopping = {"sig": 0}

    def spawn(index: int) -> None:
        flags[index] = 0
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own graceful handlers
                for i, other in enumerate(socks):
                    if i != index:
                        other.close()  # each worker holds only its own socket
                code = run_worker(cfg, socks[index], group_cls(cfg.workers, rundir, flags, index))
            except BaseException:  # noqa: BLE001 - never return into the supervisor's code
                log.exception("worker %d crashed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = index

    def forward(signum: int, _frame: Any) -> None:
        stopping["sig"] = signum
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for i in range(cfg.workers):
        spawn(i)
    # the supervisor keeps the listening sockets open (never accepting) for respawned workers: a dead
    # worker's connections wait in its socket's queue until the new worker takes over
    result = 0
    respawns: list[float] = []
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, None)
        if index is None:
            continue
        flags[index] = 0
        code = os.waitstatus_to_exitcode(status)
        if stopping["sig"]:
            result = result or (code if code > 0 else 0)
            continue
        if code > 0:
            log.error("worker %d exited with status %d: stopping all workers", index, code)
            result = code
            forward(signal.SIGTERM, None)
            continue
        if code == 0:  # a worker ended normally without being asked to: stop everything
            forward(signal.SIGTERM, None)
            continue
        now = time.monotonic()
        respawns = [t for t in respawns if now - t < 60] + [now]
        if len(respawns) > 5 * cfg.workers:
            log.error("workers keep dying (%d in a minute): stopping", len(respawns))
            result = 1
            forward(signal.SIGTERM, None)
            continue
        log.warning("worker %d was killed by signal %d: starting a new one", index, -code)
        spawn(index)
    return result


if __name__ == "__main__":
    sys.exit(main())
