"""`modelci gate`: score candidate and champion on the same hold-out rows and apply the gate policy.

  modelci gate --config model/modelci.yml --candidate out/model [--champion out/champion] --out out/gate
  modelci gate check-verdict --verdict out/gate/verdict.json --model out/model

Writes verdict.json, junit.xml, metrics.txt (GitLab metrics report), summary.md and gate.png.
Exit 0 passed (or dry run), 2 REJECT, 3 NO_CHANGE or INCONCLUSIVE not promotable, 1 error (docs/gate.md).
"""
from __future__ import annotations

import argparse
from typing import Any

from ..settings.gate import GateSettings
from ..steps import Result
from ..steps import gate as gate_step


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("gate", help="promotion gate: candidate vs champion on the hold-out set",
                              description=__doc__.splitlines()[0])
    p.add_argument("--config", help="model config (env MODELCI_CONFIG; default model/modelci.yml)")
    p.add_argument("--candidate", help="candidate model directory (env MODELCI_CANDIDATE; default <MODELCI_OUT|out>/model)")
    p.add_argument("--champion", help="champion model directory; absent or empty = first model (env MODELCI_CHAMPION)")
    p.add_argument("--out", help="output directory (env MODELCI_GATE_OUT; default <MODELCI_OUT|out>/gate)")
    p.add_argument("--dry-run", action="store_true", default=None,
                   help="report without blocking (overrides gate.dry_run; env MODELCI_GATE_DRY_RUN=true)")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=None,
                   help="after the verdict (whatever it is), post the evidence as the MR/commit note "
                        "like `modelci report` (env MODELCI_REPORT=true)")
    p.set_defaults(func=run)
    sub = p.add_subparsers(dest="gate_command", metavar="SUBCOMMAND", required=False, parser_class=type(p))
    c = sub.add_parser("check-verdict", help="refuse a model without a passing, non-dry-run verdict")
    c.add_argument("--verdict", required=True, help="verdict.json written by `modelci gate`")
    c.add_argument("--model", required=True, help="model directory the verdict must be bound to")
    c.set_defaults(func=run_check_verdict)


def run_check_verdict(args: argparse.Namespace) -> Result:
    return gate_step.check_verdict(args.verdict, args.model)


def run(args: argparse.Namespace) -> Result:
    return gate_step.run(GateSettings.from_args(args))
