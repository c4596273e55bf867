#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint (ruff, mypy --strict; any finding fails),
# then run the test suite. Extra arguments go to
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

echo "test: .venv/bin/ruff check src/cove tests"
.venv/bin/ruff check src/cove tests
echo "test: .venv/bin/mypy --strict src/cove (and the server's typed test fakes)"
.venv/bin/mypy --strict src/cove
# MYPYPATH: without it mypy would read every cove import of the tests as Any.
MYPYPATH=src .venv/bin/mypy --strict tests/unit/test_server_fakes.py

# --durations: the slowest tests named at the end, to keep the suite's time in view
echo "test: .venv/bin/pytest -q -p no:cacheprovider --durations=25 ${targets[*]} $*"
set +e
.venv/bin/pytest -q -p no:cacheprovider --durations=25 "${targets[@]}" "$@"
rc=$?
set -e
echo "test: pytest exited with $rc"
exit "$rc"
