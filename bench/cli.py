"""The ``cove`` command's own cost, this tree against another, interleaved.

Usage (as root, a covetest root with coved running and instances in it):

    python bench/cli.py --root /tmp/covetest-x/root --old /tmp/covetest-x/old/src \\
        --instance covetest1 [--runs 25] [--lxd]

Each round runs every command once with this tree's ``cove`` (the console
script scripts/setup.sh writes) and once with ``--old``'s sources
(``PYTHONPATH``) through the console script pip writes (it imports ``re``),
which is what ``cove`` was before issue 14, so both see the same machine load; it prints the median and p90 wall time in
ms. ``--lxd`` adds ``lxc exec NAME -- true`` against LXD in the same
rounds: tests/conformance/lxdhost.py sets an LXD up (started here if none
runs, stopped again at the end), a ``covetest-clibench`` busybox container
is launched in it and everything made is removed at the end. That teardown
removes every ``covetest*`` instance of LXD's default project, so while
others run the conformance suite against the same LXD, give ``--lxd-instance
[PROJECT/]NAME`` instead: an instance already running there (in a project of
its own, say ``covetest-x``), used as it is and left alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COVE = str(Path(sys.executable).with_name("cove"))
LXD_NAME = "covetest-clibench"
# pip's console script for cove (pip 23/24), the one .venv/bin/cove was
PIP_WRAPPER = """\
import re
import sys
from cove.cli.main import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


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
    ap.add_argument("--lxd", action="store_true", help="and lxc exec against LXD")
    ap.add_argument("--lxd-instance", metavar="[PROJECT/]NAME",
                    help="lxc exec into this running LXD instance (nothing set up or removed)")
    args = ap.parse_args()
    if args.lxd_instance:
        project, _, name = args.lxd_instance.rpartition("/")
        args.lxd_argv = ["lxc", "exec", *(["--project", project] if project else []), name]
        return _bench(args, dict(os.environ))
    args.lxd_argv = ["lxc", "exec", LXD_NAME]
    if not args.lxd:
        return _bench(args, None)
    sys.path.insert(0, str(REPO / "tests" / "conformance"))
    sys.path.insert(0, str(REPO / "scripts"))
    import lxdhost  # type: ignore[import-not-found]
    import mkbusybox  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory(prefix="covetest-clibench-") as work:
        tar = mkbusybox.build_busybox_image(Path(work) / "busybox.tar.gz")
        host = lxdhost.LxdHost(Path(work), tar)
        host.setup()
        try:
            env = dict(os.environ, LXD_CONF=str(host.lxd_conf))
            subprocess.run(["lxc", "launch", lxdhost.IMAGE, LXD_NAME], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            return _bench(args, env)
        finally:
            problems = host.teardown()
            if problems:
                print("lxd teardown:", problems, file=sys.stderr)


def _bench(args: argparse.Namespace, lxd_env: dict[str, str] | None) -> int:
    commands = {
        "cove --version": ["--version"],
        "cove list": ["list"],
        "cove exec NAME -- true": ["exec", args.instance, "--", "true"],
    }
    base = dict(os.environ, COVE_DIR=args.root, COVE_NO_AUTOSTART="1")
    base.pop("PYTHONPATH", None)
    with tempfile.NamedTemporaryFile("w", prefix="covetest-pipcove-", suffix=".py") as f:
        f.write(PIP_WRAPPER)
        f.flush()
        trees = {"new": ([COVE], base),
                 "old": ([sys.executable, f.name], dict(base, PYTHONPATH=args.old))}
        samples = _rounds(args, commands, trees, lxd_env, base)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"{'command':28} {'tree':4} {'median':>8} {'p90':>8}  (ms, {args.runs} runs; "
          f"load {load} at the end)")
    for (label, tree), values in samples.items():
        values.sort()
        p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
        print(f"{label:28} {tree:4} {statistics.median(values):8.1f} {p90:8.1f}")
    return 0


def _rounds(args: argparse.Namespace, commands: dict[str, list[str]],
            trees: dict[str, tuple[list[str], dict[str, str]]],
            lxd_env: dict[str, str] | None, base: dict[str, str]
            ) -> dict[tuple[str, str], list[float]]:
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.runs):
        for label, argv in commands.items():
            for tree, (cmd, env) in trees.items():
                samples.setdefault((label, tree), []).append(_time([*cmd, *argv], env))
        if lxd_env is not None:
            samples.setdefault(("lxc exec NAME -- true", "lxd"), []).append(
                _time([*args.lxd_argv, "--", "true"], lxd_env))
    return samples


if __name__ == "__main__":
    sys.exit(main())
