"""Settings of `modelci champion`."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from . import pick
from .common import CHAMPION, IMAGE_REPO, PRODUCTION_URL


@dataclass(frozen=True)
class ChampionSettings:
    production_url: str | None
    image: str | None
    out: str

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ChampionSettings:
        return cls(production_url=pick(args.production_url, PRODUCTION_URL.name),
                   image=pick(args.image, IMAGE_REPO.name),
                   out=pick(args.out, CHAMPION.name, "out/champion") or "out/champion")
