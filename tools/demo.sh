#!/usr/bin/env bash
# The demo (README "Quick start"): installs what is missing, then runs the whole pipeline on the example
# model locally through gitlab-ci-local: first model to staging and production, then a data commit to
# staging, then the manual production job. Leaves staging and production running.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/harness.sh
exec .venv/bin/python tools/demo.py "$@"
