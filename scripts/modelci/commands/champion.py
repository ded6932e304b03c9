"""`modelci champion`: fetch the model production serves now, to score it beside the candidate.

The champion is what GitLab's last successful production deployment runs (scripts/modelci/champion.py):
its model layer is read by digest and verified before it reaches --out. A project that never deployed
to production has no champion (--out stays absent); production silent while a deployment exists fails.
"""
from __future__ import annotations

import argparse
from typing import Any

from ..settings.champion import ChampionSettings
from ..steps import Result
from ..steps import champion as step


def register(sub: Any) -> None:
    p = sub.add_parser("champion", help="fetch the production model (the champion) for the gate",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--production-url", help="production URL serving /lineage [MODELCI_PRODUCTION_URL]")
    p.add_argument("--image", help="serving image repository [MODELCI_IMAGE_REPO]")
    p.add_argument("--out", help="where to put the champion's model directory [MODELCI_CHAMPION, "
                                 "default out/champion]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Result:
    return step.run(ChampionSettings.from_args(args))
