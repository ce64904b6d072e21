#!/usr/bin/env bash
# Static checks that CI runs: ruff (lint and format) and mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check pyqueue tests benchmarks examples scripts
.venv/bin/ruff format --check pyqueue tests benchmarks examples scripts
.venv/bin/mypy pyqueue
