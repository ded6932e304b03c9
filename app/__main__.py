"""`python -m app`: run the serving app with uvicorn (uvloop + httptools when installed).

Environment: HOST (default 0.0.0.0), PORT (default 8080), MODELCI_MODEL_DIR (default /app/artifact),
MODELCI_MODEL_VERSION, MODELCI_MAX_BODY_BYTES, MODELCI_INLINE_ROWS, MODELCI_LOG_LEVEL (INFO),
MODELCI_ACCESS_LOG (0; 1 logs every request, which costs throughput), MODELCI_KEEPALIVE_S (75).
Exit status: 0 after a normal shutdown (SIGTERM/SIGINT), 1 when the model cannot be served
(altered or missing artifact, failing warm-up), 64 for a bad setting.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys


def main() -> int:
    import uvicorn

    from .server import configure_logging, create_app

    configure_logging()
    log = logging.getLogger("modelci.serving")
    host = os.environ.get("HOST") or "0.0.0.0"
    try:
        port = int(os.environ.get("PORT") or 8080)
        keepalive = int(os.environ.get("MODELCI_KEEPALIVE_S") or 75)
    except ValueError as exc:
        print(f"environment: PORT/MODELCI_KEEPALIVE_S: expected an integer ({exc})", file=sys.stderr)
        return 64
    exit_code = {"code": 0}
    server: uvicorn.Server | None = None

    def fatal(code: int) -> None:
        exit_code["code"] = code
        if server is not None:
            server.should_exit = True  # polled by uvicorn's main loop; a graceful stop, then exit(code)

    app = create_app(on_fatal=fatal)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        access_log=os.environ.get("MODELCI_ACCESS_LOG", "0") == "1",
        log_level=os.environ.get("MODELCI_LOG_LEVEL", "info").lower(),
        timeout_keep_alive=keepalive,
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)
    # uvicorn handles SIGTERM/SIGINT (graceful shutdown) and afterwards re-raises the signal to the
    # handler that was installed before it: make that a no-op so a normal stop exits with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    log.info("serving %s on http://%s:%d", app.model_dir, host, port)
    server.run()
    if exit_code["code"]:
        log.error("exiting with status %d: the model could not be served (see above)", exit_code["code"])
        return exit_code["code"]
    if not server.started:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
