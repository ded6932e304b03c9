"""Small log helpers: progress on stderr, GitLab collapsible sections, secret masking."""
from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_SECRETS: set[str] = set()


def add_secret(value: str | None) -> None:
    """Register a value that must never appear in logs."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def mask(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "[MASKED]")
    return re.sub(r"(glpat-|gldt-|glcbt-)[A-Za-z0-9_\-]{8,}", r"\1[MASKED]", text)


def info(msg: str) -> None:
    print(mask(f"\033[36m[modelci]\033[0m {msg}"), file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    print(mask(f"\033[33m[modelci] warning:\033[0m {msg}"), file=sys.stderr, flush=True)


@contextmanager
def section(name: str, title: str, collapsed: bool = True) -> Iterator[None]:
    """A GitLab collapsible log section (plain lines outside CI as well)."""
    key = re.sub(r"[^a-zA-Z0-9_.-]", "_", name)
    opts = "[collapsed=true]" if collapsed else ""
    start = time.time()
    print(f"\033[0Ksection_start:{int(start)}:{key}{opts}\r\033[0K{title}", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        end = time.time()
        print(f"\033[0Ksection_end:{int(end)}:{key}\r\033[0K", file=sys.stderr, flush=True)
        info(f"{title}: {end - start:.1f}s")
