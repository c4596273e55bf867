#!/usr/bin/env python3
"""Packets an idle instance receives on a crowded default network (issue 14).

Usage: ``sudo .venv/bin/python bench/netflood.py [--count N] [--idle SECONDS]``

In-process (the engine calls coved makes), on a fresh root
``/tmp/covebench-flood-XXXX`` with the busybox image (``/sbin/init`` idles):
N instances (default 60) are launched with ``eth0`` on the root's default
network, one after the other. Counted on the host ends of *this root's*
veths only (``tx`` of the host end is what the container received):

* ``during launches``: what the first 10 instances received while the
  other N-10 were launched (flooded link-local multicast grows with N per
  launch, N^2 in all);
* ``idle``: what every instance received in ``--idle`` seconds (default 60)
  with nothing launched, per instance and per minute.

A launch that fails ends the launching (the count reached and the error
are reported: a full subnet or bridge is a result). Also reports the launch medians (all, the first 10, the last 10: with a
NIC, as the number running grows). Everything made is removed at the end.
Nothing is asserted; numbers go to ``bench/results/netflood-<time>.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cove.api import InstanceSource, InstancesPost
from cove.engine import Engine
from cove.network.model import default_network_name


def load_mkbusybox() -> Any:
    spec = importlib.util.spec_from_file_location("mkbusybox", REPO / "scripts" / "mkbusybox.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def launch(eng: Engine, name: str) -> float:
    """Launch ``name`` with the default profile's NIC; ms to RUNNING."""
    t = time.perf_counter()
    op = eng.instances.create(InstancesPost(name=name, start=True,
                                            source=InstanceSource(type="image", alias="busybox")))
    op.wait(120)
    op.raise_for_error()
    return (time.perf_counter() - t) * 1000


def delete(eng: Engine, name: str) -> None:
    op = eng.instances.delete(name, force=True)
    op.wait(120)
    op.raise_for_error()


def counters(bridge: str) -> dict[str, tuple[int, int]]:
    """Host end of each veth on ``bridge``: (packets, bytes) it sent to its container."""
    out = {}
    for port in sorted(Path(f"/sys/class/net/{bridge}/brif").iterdir()):
        st = Path(f"/sys/class/net/{port.name}/statistics")
        try:
            out[port.name] = (int((st / "tx_packets").read_text()),
                              int((st / "tx_bytes").read_text()))
        except OSError:
            pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--idle", type=float, default=60.0)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="covebench-flood-"))
    eng = Engine(root)
    bridge = default_network_name(root)
    results: dict[str, object] = {"count": args.count, "idle_s": args.idle}
    try:
        eng.startup()
        tar = root / "tmp" / "busybox.tar.gz"
        load_mkbusybox().build_busybox_image(tar)
        op = eng.images.import_file(tar, filename="busybox.tar.gz", aliases=["busybox"])
        op.wait(120)
        op.raise_for_error()
        times = []
        for i in range(10):
            times.append(launch(eng, f"f{i}"))
        time.sleep(3)  # their own start-up traffic settles
        first = counters(bridge)
        for i in range(10, args.count):
            try:
                times.append(launch(eng, f"f{i}"))
            except Exception as e:  # noqa: BLE001 - the limit is a result too
                results["launched"], results["stopped_by"] = i, str(e)
                break
        else:
            results["launched"] = args.count
        after = counters(bridge)
        during = [after[k][0] - v[0] for k, v in first.items() if k in after]
        time.sleep(3)
        a = counters(bridge)
        time.sleep(args.idle)
        b = counters(bridge)
        idle = [(b[k][0] - v[0]) * 60 / args.idle for k, v in a.items() if k in b]
        idle_bytes = [(b[k][1] - v[1]) * 60 / args.idle for k, v in a.items() if k in b]
        results.update({
            "launch_median_ms": statistics.median(times),
            "launch_median_first10_ms": statistics.median(times[:10]),
            "launch_median_last10_ms": statistics.median(times[-10:]),
            "during_launches_packets_per_instance": statistics.mean(during),
            "idle_packets_per_instance_per_min": statistics.mean(idle),
            "idle_bytes_per_instance_per_min": statistics.mean(idle_bytes)})
        for k, v in results.items():
            print(f"{k:40s} {v:10.1f}" if isinstance(v, float) else f"{k:40s} {v}")
    finally:
        for inst in eng.instances.all():
            try:
                delete(eng, inst.name)
            except Exception as e:  # noqa: BLE001 - report and go on
                print(f"cleanup of {inst.name} failed: {e}", file=sys.stderr)
        eng.operations.wait_idle(60)
        eng.close()
        shutil.rmtree(root, ignore_errors=True)
    out = REPO / "bench" / "results" / f"netflood-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"raw samples: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
