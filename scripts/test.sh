#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the test suite. Extra arguments go to
# pytest (`scripts/test.sh -x -k files`); when one of them names tests
# (`tests/unit`, `tests/unit/test_model.py::test_x`) only those run, else all
# of tests/. pytest's exit code is ours. Integration tests need root
# (sudo ./scripts/test.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

targets=(tests)
for arg in "$@"; do
    case "$arg" in
        -*) ;;
        *) if [ -e "${arg%%::*}" ]; then targets=(); break; fi ;;
    esac
done

echo "test: .venv/bin/pytest -q -p no:cacheprovider ${targets[*]} $*"
set +e
.venv/bin/pytest -q -p no:cacheprovider "${targets[@]}" "$@"
rc=$?
set -e
echo "test: pytest exited with $rc"
exit "$rc"
