#!/usr/bin/env bash
# Set up (idempotent), then run the test suite. CI calls this through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
exec .venv/bin/python -m pytest "$@"
