#!/usr/bin/env bash
# The fresh-machine demo: set up, build a busybox image from the host's
# busybox-static, import it, launch a container (the cove CLI starts coved on
# its own), run a command in it and list it. Re-runnable: a previous `demo`
# container is deleted first and an existing `busybox` alias is kept.
#
# Needs root (runc, overlay mounts, cgroups): sudo ./scripts/demo.sh
# COVE_DIR picks cove's root (default /var/lib/cove).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        echo "demo: not root, re-running with sudo"
        exec sudo --preserve-env=COVE_DIR,PYTHON bash "$REPO/scripts/demo.sh" "$@"
    fi
    echo "demo: error: run as root (containers need runc, mounts and cgroups)" >&2
    exit 1
fi

bash scripts/setup.sh

export COVE_DIR="${COVE_DIR:-/var/lib/cove}"
export PATH="$REPO/.venv/bin:$PATH"
NAME=demo
ALIAS=busybox

run() {  # show the command, then run it
    printf '\n$ %s\n' "$*"
    "$@"
}

echo "demo: cove's root is $COVE_DIR"

has_alias() {
    cove image alias list -f json | .venv/bin/python -c '
import json, sys
sys.exit(0 if any(a.get("name") == sys.argv[1] for a in json.load(sys.stdin)) else 1)
' "$ALIAS"
}

if has_alias; then
    echo "demo: image alias '$ALIAS' already there"
else
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    run .venv/bin/python scripts/mkbusybox.py "$tmp/busybox.tar.gz"
    run cove image import "$tmp/busybox.tar.gz" --alias "$ALIAS"
fi

if cove info "$NAME" >/dev/null 2>&1; then
    echo "demo: deleting the previous '$NAME'"
    cove delete --force "$NAME"
fi

run cove launch "$ALIAS" "$NAME"
run cove exec "$NAME" -- uname -a
run cove list

cat <<EOF

demo: done. Try:
  export PATH=$REPO/.venv/bin:\$PATH COVE_DIR=$COVE_DIR
  cove exec $NAME -- sh                 # a shell inside (exit to leave)
  cove info $NAME
Clean up:
  cove delete --force $NAME             # the container
  cove image delete $ALIAS            # the image
  kill \$(head -1 $COVE_DIR/coved.lock)  # stop coved (containers would keep running)
EOF
