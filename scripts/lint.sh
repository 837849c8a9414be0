#!/usr/bin/env bash
# Lint and type-check (ruff, mypy) with the versions pinned in pyproject's test extra.
# CI runs this before the tests; a finding fails it.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/mypy
