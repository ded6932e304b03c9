#!/usr/bin/env bash
# The test command (README "Quick start"; .ci/run calls it): installs what is missing, then runs
# the whole suite, end-to-end tests included. Fails if any test is skipped (except the opt-in tests
# against a real GitLab) or if the end-to-end tests were not collected.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/harness.sh
export MODELCI_STRICT_SUITE=1
exec .venv/bin/python -m pytest -p no:cacheprovider -rs "$@"
