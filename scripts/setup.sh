#!/usr/bin/env bash
# Set up a development host for cove: Debian packages, then .venv with cove
# installed in editable mode with its test extras.
#
# Idempotent and quick when everything is there: apt runs only for what is
# missing (and `apt-get update` only then), pip only when pyproject.toml or
# the interpreter changed since the last install (a stamp in .venv).
#
# Environment: PYTHON (interpreter that makes the venv, default python3),
# COVE_SETUP_FORCE=1 to reinstall the venv's packages anyway.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
VENV="$REPO/.venv"
STAMP="$VENV/.cove-setup-stamp"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run: $* (run this script as root)"
    fi
}

# --- Debian packages ---------------------------------------------------------
# package[:command]: with a command, a package counts as present when the
# command is on PATH (installed some other way); without one, only when dpkg
# says so. busybox must be the static build (the image builder copies it into
# a rootfs that has no libc).
PACKAGES=(
    runc:runc conmon:conmon lxd-client:lxc busybox-static
    # networking: bridges and veths (iproute2), cove's nftables table
    # (libnftables1 comes with nftables), per-network DNS (dnsmasq-base),
    # networks of type cni run their plugins from /usr/lib/cni
    iproute2 nftables dnsmasq-base containernetworking-plugins
)
names=("${PACKAGES[@]%%:*}")
installed_list=$(dpkg-query -W -f='${Package} ${Status}\n' "${names[@]}" 2>/dev/null || true)
missing=()
for entry in "${PACKAGES[@]}"; do
    pkg=${entry%%:*}
    cmd=${entry#*:}
    if [ "$cmd" != "$entry" ] && command -v "$cmd" >/dev/null 2>&1; then
        continue
    fi
    grep -qx "$pkg install ok installed" <<<"$installed_list" || missing+=("$pkg")
done
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=...)"
# Debian's python3 has venv and ensurepip in python3-venv; other builds
# (pyenv, python.org) have them built in.
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi

if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "packages present (${names[*]})"
fi

# --- virtualenv ----------------------------------------------------------------
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    say "removing a broken .venv (its interpreter no longer runs)"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating .venv with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    "$PYTHON" -m venv "$VENV"
    rm -f "$STAMP"
fi

want="$( { sha256sum pyproject.toml; "$VENV/bin/python" -c 'import sys; print(sys.version)'; } \
         | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "${COVE_SETUP_FORCE:-}" = 1 ] || [ "$want" != "$have" ] \
        || ! "$VENV/bin/python" -c 'import cove' >/dev/null 2>&1; then
    say "pip install -e '.[test]' into .venv"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$REPO[test]"
    echo "$want" > "$STAMP"
else
    say ".venv up to date"
fi
# cove's console script without pip's `import re` (it strips a Windows
# ".exe" from argv[0]; importing re costs ~6 ms, a fifth of `cove --version`)
# and without the site module (-S): site reads every .pth file of the venv,
# and setuptools' distutils-precedence.pth imports its distutils hack, ~5 ms
# of every command; the two paths site would add (site-packages and this
# checkout's src, pip's editable .pth) are written in instead.
# Rewritten after every install, and only when it differs.
purelib="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
wrapper="#!$VENV/bin/python -S
# cove's console script, written by scripts/setup.sh (-S: see there).
import sys

sys.path += [\"$purelib\", \"$REPO/src\"]
from cove.cli.main import run

if __name__ == \"__main__\":
    run()"
if [ "$(cat "$VENV/bin/cove" 2>/dev/null)" != "$wrapper" ]; then
    printf '%s\n' "$wrapper" > "$VENV/bin/cove.tmp"
    chmod 755 "$VENV/bin/cove.tmp"
    mv -f "$VENV/bin/cove.tmp" "$VENV/bin/cove"
fi
# Byte-compile cove: the CLI runs on every call and compiling its modules
# costs ~20 ms each time where bytecode is not written back on its own
# (PYTHONDONTWRITEBYTECODE, read-only trees). Quick when nothing changed.
"$VENV/bin/python" -m compileall -q "$REPO/src/cove" >/dev/null
say "ready: $VENV/bin/cove"
