#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the whole test suite. Extra arguments go
# to pytest (e.g. `scripts/test.sh -x -k files`); pytest's exit code is ours.
# Integration tests need root (sudo ./scripts/test.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "test: .venv/bin/pytest -q tests $*"
set +e
.venv/bin/pytest -q -p no:cacheprovider tests "$@"
rc=$?
set -e
echo "test: pytest exited with $rc"
exit "$rc"
