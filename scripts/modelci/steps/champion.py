"""The champion step: fetch the model production serves now, to score it beside the candidate.

Production's /lineage names the served model (else the registry's highest version, see
modelci.champion); its image is pulled and the verified model directory copied out
(docs/design.md#evaluation-set-and-champion). No champion (the first model) leaves the output
directory absent.
"""
from __future__ import annotations

from .. import champion
from ..errors import ModelCIError
from ..oci import ImageRepo
from ..settings.champion import ChampionSettings
from . import Result


def run(s: ChampionSettings) -> Result:
    if not s.image:
        raise ModelCIError("no image repository: pass --image or set MODELCI_IMAGE_REPO")
    return Result({"champion": champion.fetch(s.production_url, ImageRepo.parse(s.image), s.out)})
