#!/usr/bin/env python3
"""CPU per launch of a container's monitor, A/B of ``COVE_MONITOR=conmon``
and ``cove`` (issue 14, docs/performance.md "cove's own monitor").

Usage::

    sudo .venv/bin/python bench/mon_cpu.py [N]

One root, coved (this tree) in a cpuacct cgroup of its own as
``bench/par_cpu.py`` runs it; three rounds, alternating the monitor: one
warm-up launch (builds cove-monitor), then N sequential launches without a
NIC. Per launch: the cgroup's CPU (coved, the monitor, runc create and
start; not the containers' own), what coved reaped (the monitor's first,
daemonising process), the monitor's own CPU so far (``schedstat``), its PSS
and the mean launch time. Sequential, so that a loaded host disturbs the
figures less than a parallel burst does. Prints one JSON line per round.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import par_cpu as P

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _monitor_figures(root: Path, names: list[str]) -> tuple[float, float]:
    """Mean own CPU (ms) and PSS (KiB) of the monitors of ``names``."""
    own, pss = [], []
    for n in names:
        mpid = int((root / "run" / "pids" / f"{n}.conmon").read_text())
        own.append(int(Path(f"/proc/{mpid}/schedstat").read_text().split()[0]))
        for line in Path(f"/proc/{mpid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss.append(int(line.split()[1]))
    return sum(own) / len(own) / 1e6, sum(pss) / len(pss)


def main() -> int:
    n_launch = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    root = Path(tempfile.mkdtemp(prefix="covescale-mon-", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="covescale-mon-art-", dir="/tmp"))
    cg = P.CPUACCT / f"covemon-{os.getpid()}"
    cg.mkdir()
    art = P._run_mod().Artifacts(work, "mon")
    seq = 0
    try:
        with P.Coved(root, SRC, cg) as c:
            c.client().import_image(str(art.unified), aliases=["busybox"])
        for rnd in range(3):
            for mon in ("conmon", "cove"):
                with P.Coved(root, SRC, cg, {"COVE_MONITOR": mon}) as c:
                    assert c.p is not None
                    cl = c.client()
                    seq += 1
                    P.launch(cl, f"warm{seq}", False)  # builds the monitor, once
                    names = []
                    u0, ch0 = int((cg / "cpuacct.usage").read_text()), P.pstat(c.p.pid)[1]
                    t0 = time.perf_counter()
                    for _ in range(n_launch):
                        seq += 1
                        names.append(f"m{seq}")
                        P.launch(cl, names[-1], False)
                    wall = time.perf_counter() - t0
                    u1, ch1 = int((cg / "cpuacct.usage").read_text()), P.pstat(c.p.pid)[1]
                    own, pss = _monitor_figures(root, names)
                    rec: dict[str, Any] = {
                        "monitor": mon, "round": rnd, "n": n_launch,
                        "cg_cpu_ms_per_launch": round((u1 - u0) / n_launch / 1e6, 2),
                        "reaped_children_ms_per_launch": round((ch1 - ch0) * 1000 / n_launch, 2),
                        "monitor_own_cpu_ms": round(own, 3), "monitor_pss_kib": round(pss, 1),
                        "launch_ms_mean": round(wall * 1000 / n_launch, 1),
                        "loadavg": os.getloadavg()[0]}
                    print(json.dumps(rec), flush=True)
                    P.delete(cl, P.running(cl))
    finally:
        with P.Coved(root, SRC, cg) as c:
            cl = c.client()
            P.delete(cl, P.running(cl))
            for img in cl.images():
                cl.delete_image(img["fingerprint"] if isinstance(img, dict)
                                else img.rsplit("/", 1)[1]).wait()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        try:
            cg.rmdir()
        except OSError as e:
            print(f"cgroup {cg} left: {e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
