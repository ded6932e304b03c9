"""Variables more than one step reads, declared once here (docs/settings.md lists them with every
command that reads them). Step modules import this module, so these names are always declared."""
from __future__ import annotations

from . import var

CONFIG = var("MODELCI_CONFIG", "The model config file (modelci.yml).", "model/modelci.yml", kind="path",
             used_by=("train", "build", "gate", "monitor", "registry"))
OUT = var("MODELCI_OUT", "The training job's output directory: OUT/model, OUT/run.json, OUT/metrics.json; "
          "other outputs default to paths under it.", "out", kind="path",
          used_by=("train", "reproduce", "gate", "build", "report"))
CANDIDATE = var("MODELCI_CANDIDATE", "The model directory trained in this pipeline (the candidate); "
                "default OUT/model. Not the serving image's MODELCI_MODEL_DIR.", kind="path",
                used_by=("gate", "build"))
CHAMPION = var("MODELCI_CHAMPION", "The champion's (production's) model directory: where `modelci champion` "
               "puts it (default out/champion) and `modelci gate` reads it (unset: no champion, the first "
               "model).", kind="path", aliases=("MODELCI_CHAMPION_DIR",), used_by=("champion", "gate"))
GATE_OUT = var("MODELCI_GATE_OUT", "The gate's evidence directory (verdict.json, junit.xml, metrics.txt, "
               "summary.md); default OUT/gate.", kind="path", used_by=("gate", "report"))
IMAGE_REPO = var("MODELCI_IMAGE_REPO", "The serving image repository, e.g. $CI_REGISTRY_IMAGE/serving "
                 "(the `serving_image` input).", kind="str", used_by=("build", "champion", "monitor", "gate"))
PRODUCTION_URL = var("MODELCI_PRODUCTION_URL", "Production's base URL (the serving app answering /lineage "
                     "and /metrics), where the champion is found and drift is measured.", kind="url",
                     used_by=("build", "champion", "monitor", "setup", "gate"))
ENVIRONMENT = var("MODELCI_ENVIRONMENT", "The deploy environment's name (staging, production); falls back "
                  "to CI_ENVIRONMENT_NAME.", used_by=("deploy", "k8s", "setup"))
IMAGE = var("MODELCI_IMAGE", "The serving image pinned by digest, REPO@sha256:..., from the build job's "
            "dotenv report.", used_by=("deploy", "k8s"))
MODEL_VERSION = var("MODELCI_MODEL_VERSION", "The model's semver version: written by the build job's dotenv "
                    "report, baked into the serving image (reported by /lineage).",
                    used_by=("build", "k8s", "serving image"))
MODEL_SHA256 = var("MODELCI_MODEL_SHA256", "The model's sha256, from the build job's dotenv report.",
                   used_by=("build", "k8s"))
BASE_IMAGE = var("MODELCI_BASE_IMAGE", "BASE_IMAGE build argument of the serving image (a Debian Python "
                 "image); unset: the Dockerfile's default.", used_by=("build", "deploy"))
FORCE_RETRAIN = var("FORCE_RETRAIN", "Train even when a model for the same inputs is cached, and run the "
                    "training jobs whatever changed (a maintainer's manual pipeline, a drift retrain).",
                    "false", kind="bool", used_by=("train", "templates"))
REGISTRY_USER = var("MODELCI_REGISTRY_USER", "User for the image registry (else CI_REGISTRY_USER, which GitLab "
                    "provides).", used_by=("build", "deploy", "champion", "release"))
REGISTRY_PASSWORD = var("MODELCI_REGISTRY_PASSWORD", "Password for the image registry (else "
                        "CI_REGISTRY_PASSWORD); passed through the Docker API, never a command line or a log.",
                        kind="secret", used_by=("build", "deploy", "champion", "release"), secret=True)
