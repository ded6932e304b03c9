"""Pipeline steps: one module per step, each exposing `run(settings) -> Result`.

Commands (`modelci.commands.*`) only parse arguments, build the step's settings
(`modelci.settings`) and call the step. Steps call steps, never commands. `cli.main` prints the
result once (JSON on stdout, secrets masked) and maps `Result.exit_code` to the process exit code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    """What a step returns: the machine-readable document printed on stdout, and the exit code.

    `text`, when set, is printed on stdout instead of `data` (e.g. `modelci k8s render` without --out
    writes the YAML itself). `error`, when set, is printed after the document as the command's one-line
    error on stderr, for a step whose failure still has a document to show (reproduce, k8s validate).
    """
    data: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0
    text: str | None = None
    error: str | None = None
    one_line: bool = False   # print the JSON on one line (report and gate: callers read the last line)
