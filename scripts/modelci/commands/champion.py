"""`modelci champion`: fetch the model production serves now, to score it beside the candidate.

The champion is what GitLab's last successful production deployment runs (scripts/modelci/champion.py):
its model layer is read by digest and verified before it reaches --out. A project that never deployed
to production has no champion (--out stays absent); production silent while a deployment exists fails.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from .. import champion, dockerutil
from ..errors import ModelCIError
from ..oci import ImageRepo


def register(sub: Any) -> None:
    p = sub.add_parser("champion", help="fetch the production model (the champion) for the gate",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--production-url", default=os.environ.get("MODELCI_PRODUCTION_URL"),
                   help="production URL serving /lineage [MODELCI_PRODUCTION_URL]")
    p.add_argument("--image", default=os.environ.get("MODELCI_IMAGE_REPO"),
                   help="serving image repository [MODELCI_IMAGE_REPO]")
    p.add_argument("--out", default=os.environ.get("MODELCI_CHAMPION_DIR", "out/champion"),
                   help="where to put the champion's model directory [out/champion]")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.image:
        raise ModelCIError("no image repository: pass --image or set MODELCI_IMAGE_REPO")
    found = champion.fetch(args.production_url, ImageRepo.parse(args.image), args.out)
    print(dockerutil.dumps({"champion": found}))
    return 0
