#!/usr/bin/env bash
# The README's test command: set up everything (scripts/install.sh), then run the suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/test_indexer.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/python -m pytest "$@"
