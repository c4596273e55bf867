"""``cove up`` of a 10-service stack beside a shell loop of ``lxc launch`` and
``podman-compose up -d``, the same busybox rootfs everywhere.

Usage (as root; prints medians, writes bench/results/stack-<time>.json):

    sudo .venv/bin/python bench/stack.py [--rounds 3] [--no-lxd] [--no-podman]

The stack: 10 services in 3 levels (a0-a3; b0-b2 each on two a's; c0-c2
each on two b's), each ``sleep`` as its command, no readiness probe.

- **cove**: a coved of its own on a fresh ``covetest-`` root; the time of
  ``cove up -d`` (the stack's bridge network, then the instances created and
  started in dependency order), then ``cove down`` (timed too).
- **LXD**: the LXD already running on the machine, in a project of its own
  (own images, the default project's profiles: whatever NIC and pool they
  give), a shell loop of ``lxc launch`` in the same order, then ``lxc
  delete --force``. Skipped with the reason when that LXD
  cannot launch. Only ``covetest-`` names are used in it.
- **podman-compose**: pip-installed into a temporary venv (PyPI), podman with
  private storage (``--root``/``--runroot``), ``network_mode: none`` so
  nothing is added to the host's CNI configuration; skipped when pip or
  podman cannot. Its services have no network, so it does less than cove.

Never asserted anywhere; the numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LEVELS = (("a0", "a1", "a2", "a3"), ("b0", "b1", "b2"), ("c0", "c1", "c2"))
IMAGE = "covetest-stackbench"


def services() -> list[tuple[str, list[str]]]:
    """(service, its dependencies) in start order."""
    out: list[tuple[str, list[str]]] = []
    for i, level in enumerate(LEVELS):
        below = LEVELS[i - 1] if i else ()
        for j, name in enumerate(level):
            deps = [below[j % len(below)], below[(j + 1) % len(below)]] if below else []
            out.append((name, sorted(set(deps))))
    return out


def compose_text(image: str, *, network_none: bool = False) -> str:
    lines = ["services:"]
    for name, deps in services():
        lines += [f"  {name}:", f"    image: {image}", "    command: sleep 100000",
                  "    stop_signal: SIGKILL"]
        if network_none:  # podman: no host network config; rlimits as bench/run.py
            lines += ["    network_mode: none", "    ulimits:",
                      "      nofile: {soft: 1024, hard: 1024}", "      nproc: 1000"]
        if deps:
            lines.append("    depends_on: [" + ", ".join(deps) + "]")
    return "\n".join(lines) + "\n"


def timed(argv: list[str], timeout: float = 300, **kw: Any) -> float:
    start = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise RuntimeError(f"{' '.join(argv[:2])}...: hung for {timeout:g} s") from None
    elapsed = time.perf_counter() - start
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}...: exit {p.returncode}: "
                           f"{err.decode(errors='replace').strip()[-400:]}")
    return elapsed


def run(argv: list[str], *, check: bool = False,
        **kw: Any) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run(argv, capture_output=True, check=False, timeout=600, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}: {p.stderr.decode(errors='replace')[-400:]}")
    return p


def _unmount_under(folder: Path) -> None:
    """What podman or coved left mounted under ``folder``, deepest first."""
    prefix = str(folder) + "/"
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for m in sorted(mounts, key=len, reverse=True):
        run(["umount", "-l", m])


def bench_cove(work: Path, unified: Path, rounds: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="covetest-stackbench-"))
    env = dict(os.environ, COVE_DIR=str(root), COVE_NO_AUTOSTART="1",
               PYTHONPATH=str(REPO / "src"))
    log = open(work / "coved.log", "ab")  # noqa: SIM115 - closed in finally
    coved = subprocess.Popen([sys.executable, "-m", "cove.server.main", "--root", str(root)],
                             env=env, stdout=log, stderr=log, start_new_session=True)
    cove = [sys.executable, "-m", "cove.cli.main"]
    folder = work / "cove"
    folder.mkdir()
    (folder / "compose.yaml").write_text(compose_text("busybox"))
    ups, downs = [], []
    try:
        deadline = time.monotonic() + 60
        while run([*cove, "list"], env=env).returncode != 0:
            if time.monotonic() > deadline or coved.poll() is not None:
                raise RuntimeError("coved did not start")
            time.sleep(0.2)
        run([*cove, "image", "import", str(unified), "--alias", "busybox"], env=env,
            check=True)
        # the same plan through the sync driver, one service at a time, in the
        # same rounds: what starting a level at once gains
        one_by_one = [sys.executable, "-c",
                      ("import sys; from cove.client.drivers.rest import RestDriver; "
                      "RestDriver(sys.argv[1]).stack(sys.argv[2], name=sys.argv[3]).up()"),
                      str(root / "unix.socket"), str(folder / "compose.yaml")]
        serial = []
        for r in range(rounds):
            name = f"covetest-sb{r}"
            ups.append(timed([*cove, "up", "-d", "-p", name], env=env, cwd=folder))
            downs.append(timed([*cove, "down", "-p", name], env=env, cwd=folder))
            serial.append(timed([*one_by_one, name], env=env, cwd=folder))
            timed([*cove, "down", "-p", name], env=env, cwd=folder)
        return {"up_s": ups, "down_s": downs, "command": "cove up -d / cove down",
                "up_one_by_one_s": serial}
    finally:
        coved.terminate()
        try:
            coved.wait(60)
        except subprocess.TimeoutExpired:
            coved.kill()
            coved.wait()
        log.close()
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


def bench_lxd(unified: Path, rounds: int) -> dict[str, Any]:
    """In a ``covetest-`` project of its own with its own images (the same
    busybox image may be in the default project, a conformance run's, which
    this must neither use nor delete) and the default project's profiles."""
    if shutil.which("lxc") is None:
        return {"skipped": "no lxc command"}
    project = "covetest-stackbench"
    lxc = ["lxc", "--project", project]
    names: list[str] = []
    try:
        p = run(["lxc", "project", "create", project, "-c", "features.images=true",
                 "-c", "features.profiles=false"])
        if p.returncode != 0:
            return {"skipped": f"lxc project create: {p.stderr.decode().strip()}"}
        p = run([*lxc, "image", "import", str(unified), "--alias", IMAGE])
        if p.returncode != 0:
            return {"skipped": f"lxc image import: {p.stderr.decode().strip()}"}
        times = []
        for r in range(rounds):
            batch = [f"covetest-sb{r}-{s}" for s, _ in services()]
            names += batch
            loop = "set -e; " + "; ".join(
                f"lxc --project {project} launch {IMAGE} {n} -q" for n in batch)
            times.append(timed(["sh", "-c", loop]))
            run([*lxc, "delete", "--force", *batch])
        return {"up_s": times, "command": "sh -c 'lxc launch ...' x10, in order"}
    except RuntimeError as e:
        return {"skipped": f"LXD: {str(e)[-300:]}"}
    finally:
        if names:
            run([*lxc, "delete", "--force", *names])
        run([*lxc, "image", "delete", IMAGE])
        run(["lxc", "project", "delete", project])


def bench_podman(work: Path, plain: Path, rounds: int) -> dict[str, Any]:
    if shutil.which("podman") is None:
        return {"skipped": "no podman"}
    venv = work / "pcvenv"
    if run([sys.executable, "-m", "venv", str(venv)]).returncode != 0:
        return {"skipped": "no venv"}
    p = run([str(venv / "bin" / "pip"), "install", "-q", "podman-compose"])
    if p.returncode != 0:
        return {"skipped": f"pip install podman-compose: {p.stderr.decode().strip()[-300:]}"}
    store = work / "podman"
    args = (f"--root {store}/root --runroot {store}/run --tmpdir {store}/tmp "
            "--storage-driver overlay --cgroup-manager cgroupfs --events-backend file")
    podman = ["podman", *args.split()]
    image = f"localhost/{IMAGE}:latest"
    folder = work / "pc"
    folder.mkdir()
    (folder / "compose.yaml").write_text(compose_text(image, network_none=True))
    pc = [str(venv / "bin" / "podman-compose"), f"--podman-args={args}"]
    version = run([*pc, "version"]).stdout.decode().strip().splitlines()
    try:
        run([*podman, "import", str(plain), image], check=True)
        ups, downs = [], []
        for r in range(rounds):
            ups.append(timed([*pc, "-p", f"covetest-sb{r}", "up", "-d"], cwd=folder))
            downs.append(timed([*pc, "-p", f"covetest-sb{r}", "down", "-t", "0"], cwd=folder))
        return {"up_s": ups, "down_s": downs, "version": version[-1:] or [],
                "command": "podman-compose up -d / down (network_mode: none)"}
    except RuntimeError as e:
        return {"skipped": f"podman-compose: {e}"}
    finally:
        run([*podman, "rm", "-af", "-t", "0"])
        run([*podman, "rmi", "-af"])
        _unmount_under(store)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-lxd", action="store_true")
    ap.add_argument("--no-podman", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="covetest-stackbench-work-"))
    try:
        spec = importlib.util.spec_from_file_location("mkbusybox",
                                                      REPO / "scripts" / "mkbusybox.py")
        assert spec is not None and spec.loader is not None
        mk = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mk)
        unified = mk.build_busybox_image(work / "busybox.tar.gz")
        plain = mk.build_busybox_image(work / "busybox-plain.tar.gz", plain=True)
        results: dict[str, Any] = {"services": services(), "rounds": args.rounds,
                                   "load": os.getloadavg(), "cpus": os.cpu_count()}
        results["cove"] = bench_cove(work, unified, args.rounds)
        if not args.no_lxd:
            results["lxd"] = bench_lxd(unified, args.rounds)
        if not args.no_podman:
            results["podman_compose"] = bench_podman(work, plain, args.rounds)
        for key in ("cove", "lxd", "podman_compose"):
            r = results.get(key)
            if r is None:
                continue
            if "skipped" in r:
                print(f"{key:15} skipped: {r['skipped']}")
                continue
            line = f"{key:15} up {statistics.median(r['up_s']):6.2f} s"
            if r.get("down_s"):
                line += f"   down {statistics.median(r['down_s']):6.2f} s"
            print(f"{line}   ({r['command']})")
            if r.get("up_one_by_one_s"):
                print(f"{'':15} up  {statistics.median(r['up_one_by_one_s']):6.2f} s"
                      "   (the same, one service at a time: Stack on the sync driver)")
        out = REPO / "bench" / "results" / f"stack-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"raw samples: {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
