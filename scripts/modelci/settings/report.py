"""Settings of `modelci report`."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from . import env, get, pick
from .common import GATE_OUT, OUT


@dataclass(frozen=True)
class ReportSettings:
    gate_dir: str
    mr: str | None
    commit: str | None
    plot: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReportSettings:
        return cls(gate_dir=pick(args.gate_dir, GATE_OUT.name) or str(Path(get(OUT.name) or "out") / "gate"),
                   mr=args.mr or env("CI_MERGE_REQUEST_IID"), commit=args.commit or env("CI_COMMIT_SHA"),
                   plot=args.plot)
