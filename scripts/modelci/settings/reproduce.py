"""Settings of `modelci reproduce`."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from . import get
from .common import OUT
from .train import ci_ids


@dataclass(frozen=True)
class ReproduceSettings:
    run_record: Path
    out: Path | None
    base_dir: Path | None
    tolerance: float | None
    pipeline_id: str | None = None
    job_id: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReproduceSettings:
        run_record = Path(args.run_record) if args.run_record else Path(get(OUT.name) or "out") / "run.json"
        return cls(run_record=run_record, out=Path(args.out) if args.out else None,
                   base_dir=Path(args.base_dir) if args.base_dir else None,
                   tolerance=args.tolerance, **ci_ids())
