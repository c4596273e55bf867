"""The ``cove`` command's own cost, this tree against another, interleaved.

Usage (as root, a covetest root with coved running and instances in it):

    python bench/cli.py --root /tmp/covetest-x/root --old /tmp/covetest-x/old/src \\
        --instance covetest1 [--runs 25] [--lxc NAME]

Each round runs every command once with this tree's ``cove`` and once with
``--old``'s sources (``PYTHONPATH``), through the same console script, so
both see the same machine load; it prints the median and p90 wall time in
ms. ``--lxc NAME`` adds ``lxc exec NAME -- true`` against a running LXD.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COVE = str(Path(sys.executable).with_name("cove"))


def _time(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{cmd}: exit {proc.returncode}: {proc.stderr.decode()}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--old", required=True, help="the src/ directory of the tree to compare")
    ap.add_argument("--instance", required=True)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--lxc", metavar="NAME")
    args = ap.parse_args()
    commands = {
        "cove --version": ["--version"],
        "cove list": ["list"],
        "cove exec NAME -- true": ["exec", args.instance, "--", "true"],
    }
    base = dict(os.environ, COVE_DIR=args.root, COVE_NO_AUTOSTART="1")
    base.pop("PYTHONPATH", None)
    trees = {"new": base, "old": dict(base, PYTHONPATH=args.old)}
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.runs):
        for label, argv in commands.items():
            for tree, env in trees.items():
                samples.setdefault((label, tree), []).append(_time([COVE, *argv], env))
        if args.lxc:
            samples.setdefault(("lxc exec NAME -- true", "lxd"), []).append(
                _time(["lxc", "exec", args.lxc, "--", "true"], base))
    print(f"{'command':28} {'tree':4} {'median':>8} {'p90':>8}  (ms, {args.runs} runs)")
    for (label, tree), values in samples.items():
        values.sort()
        p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
        print(f"{label:28} {tree:4} {statistics.median(values):8.1f} {p90:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
