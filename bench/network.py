#!/usr/bin/env python3
"""What networking adds to a cove launch, and whether it grows with the host.

Usage: ``sudo .venv/bin/python bench/network.py [--runs N] [--scale N]``

In-process (the engine calls coved makes, without HTTP), on a fresh root
``/tmp/covebench-net-XXXX`` with the busybox image, round-robin:

* ``none``: launch to RUNNING with no NIC (``eth0: {type: none}``)
* ``nic``: with ``eth0`` on the root's default network (lease, veth into the
  container's namespace, /etc/hosts and resolv.conf, a dnsmasq name)
* ``nic+port``: the same plus one published port (``proxy`` device, nat=true)
* ``cni``: ``eth0`` on a network of type cni instead, running a bridge +
  host-local conflist from ``/usr/lib/cni`` (skipped when the plugins are
  not installed); its bridge ``covebench<hex>``, on a free 10.224.X.0/24 with
  no address on the host, and host-local's directory for it are removed at
  the end

then ``--scale`` instances with a NIC and a published port are started and
``nic+port`` is timed again: per-instance changes are nftables *elements*,
so the time must not grow with the number of containers.

The network steps are also timed one by one (wrapping the engine's and
the host driver's methods), to say what dominates. Everything made is
removed at the end. Nothing here is asserted by the tests; numbers go to
``bench/results/network-<time>.json``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cove.api import InstanceSource, InstancesPost
from cove.engine import Engine

STEPS: dict[str, list[float]] = defaultdict(list)


def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            STEPS[label].append((time.perf_counter() - t) * 1000)
    return wrapper


def load_mkbusybox() -> Any:
    spec = importlib.util.spec_from_file_location("mkbusybox", REPO / "scripts" / "mkbusybox.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CNI_NET = "covebenchcni"


def devices(kind: str, port: int) -> dict[str, dict[str, str]]:
    if kind == "none":
        return {"eth0": {"type": "none"}}
    if kind == "nic":
        return {}
    if kind == "cni":
        return {"eth0": {"type": "nic", "network": CNI_NET, "name": "eth0"}}
    return {"web": {"type": "proxy", "listen": f"tcp:0.0.0.0:{port}",
                    "connect": "tcp:0.0.0.0:80", "nat": "true"}}


def launch(eng: Engine, name: str, kind: str, port: int) -> float:
    t = time.perf_counter()
    op = eng.instances.create(InstancesPost(name=name, source=InstanceSource(alias="busybox"),
                                            start=True, devices=devices(kind, port)))
    op.wait(120)
    op.raise_for_error()
    return (time.perf_counter() - t) * 1000


def delete(eng: Engine, name: str) -> None:
    op = eng.instances.delete(name, force=True)
    op.wait(120)
    op.raise_for_error()


def free_subnet(prefix: str) -> str:
    import ipaddress
    import json as _json
    import subprocess

    used = []
    for argv in (["ip", "-j", "-4", "route", "show", "table", "all"], ["ip", "-j", "-4", "addr"]):
        out = subprocess.run(argv, capture_output=True, check=True, timeout=30).stdout
        for item in _json.loads(out or b"[]"):
            dst = item.get("dst")
            if dst and dst != "default":
                used.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32",
                                                 strict=False))
            for a in item.get("addr_info", []):
                used.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}",
                                                 strict=False))
    for x in range(256):
        net = ipaddress.ip_network(f"{prefix}.{x}.0/24")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise SystemExit(f"no free {prefix}.X.0/24")


class CniNet:
    """A cni network of the bench's own and what its plugins leave on the host."""

    def __init__(self, eng: Engine) -> None:
        import secrets

        self.eng = eng
        self.bridge = f"covebench{secrets.token_hex(3)}"
        self.name = f"covebench-{self.bridge[-6:]}"
        self.had_state = Path("/var/lib/cni").exists()
        conf = {"cniVersion": "1.0.0", "name": self.name, "plugins": [
            {"type": "bridge", "bridge": self.bridge, "isGateway": False, "ipMasq": False,
             "ipam": {"type": "host-local",
                      "ranges": [[{"subnet": free_subnet("10.224")}]]}}]}
        eng.networks.create(CNI_NET, type="cni", config={"cni.config": json.dumps(conf)})

    def remove(self) -> None:
        import subprocess

        try:
            self.eng.networks.delete(CNI_NET)
        except Exception as e:  # noqa: BLE001 - report, clean the host anyway
            print(f"cleanup of network {CNI_NET} failed: {e}", file=sys.stderr)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        shutil.rmtree(f"/var/lib/cni/networks/{self.name}", ignore_errors=True)
        if not self.had_state:
            for d in ("/var/lib/cni/networks", "/var/lib/cni"):
                try:
                    Path(d).rmdir()
                except OSError:
                    break


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--scale", type=int, default=200)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="covebench-net-"))
    eng = Engine(root)
    results: dict[str, Any] = {"runs": args.runs, "scale": args.scale}
    made: list[str] = []
    cni: CniNet | None = None
    try:
        eng.startup()
        tar = root / "tmp" / "busybox.tar.gz"
        load_mkbusybox().build_busybox_image(tar)
        op = eng.images.import_file(tar, filename="busybox.tar.gz", aliases=["busybox"])
        op.wait(120)
        op.raise_for_error()
        # the step timers (after the warm-up below the first sample is not special)
        nics = eng.instances._net  # the instance side of networking (NetworkPort)
        for meth in ("prepare", "attach", "release", "check_devices"):
            setattr(nics, meth, timed(f"nics.{meth}", getattr(nics, meth)))
        host = eng.networks.ctx.host  # the host's network driver
        for meth in ("attach", "publish_dns", "set_ports"):
            if hasattr(host, meth):
                setattr(host, meth, timed(f"host.{meth}", getattr(host, meth)))
        host.nl.attach = timed("netlink.attach (veth + in-ns config)",  # type: ignore
                               host.nl.attach)

        kinds: tuple[str, ...] = ("none", "nic", "nic+port")
        if Path("/usr/lib/cni/bridge").exists():
            cni = CniNet(eng)
            kinds += ("cni",)
        samples: dict[str, list[float]] = {k: [] for k in kinds}
        port = 20000
        for i in range(args.runs + 2):  # two warm-up rounds
            for k in kinds:
                name = f"b{i}-{k.replace('+', '-')}"
                port += 1
                ms = launch(eng, name, k, port)
                if i >= 2:
                    samples[k].append(ms)
                delete(eng, name)
            if i == 1:
                STEPS.clear()
        print(f"launch to RUNNING, median of {args.runs} (ms):")
        for k in kinds:
            print(f"  {k:10s} {med(samples[k]):7.1f}")
        print(f"  network adds {med(samples['nic']) - med(samples['none']):.1f} ms (NIC), "
              f"{med(samples['nic+port']) - med(samples['none']):.1f} ms (NIC + port)"
              + (f", {med(samples['cni']) - med(samples['none']):.1f} ms (cni NIC)"
                 if "cni" in samples else ""))
        print("network steps, median (ms):")
        for label, xs in sorted(STEPS.items()):
            print(f"  {label:40s} {med(xs):6.2f}  (n={len(xs)})")
        results["launch"] = {k: {"median_ms": med(v), "samples": v} for k, v in samples.items()}
        results["steps"] = {k: {"median_ms": med(v), "samples": v} for k, v in STEPS.items()}

        print(f"starting {args.scale} instances with a NIC and a published port ...")
        t0 = time.perf_counter()
        for i in range(args.scale):
            name = f"s{i}"
            made.append(name)
            launch(eng, name, "nic+port", 30000 + i)
        print(f"  done in {time.perf_counter() - t0:.1f} s")
        STEPS.clear()
        loaded: dict[str, list[float]] = {k: [] for k in kinds}
        for i in range(min(args.runs, 20)):
            for k in kinds:
                name = f"l{i}-{k.replace('+', '-')}"
                loaded[k].append(launch(eng, name, k, 40000 + i))
                delete(eng, name)
        print(f"with {args.scale} running, median (ms):")
        for k in kinds:
            print(f"  {k:10s} {med(loaded[k]):7.1f}  ({med(loaded[k]) / med(samples[k]):.2f}x "
                  "the launch with none running)")
        for label, xs in sorted(STEPS.items()):
            print(f"  {label:40s} {med(xs):6.2f}  (n={len(xs)})")
        results["loaded"] = {k: {"median_ms": med(v), "samples": v,
                                 "ratio": med(v) / med(samples[k])} for k, v in loaded.items()}
        results["loaded_steps"] = {k: {"median_ms": med(v)} for k, v in STEPS.items()}
    finally:
        for name in [i.name for i in eng.instances.all()]:
            try:
                delete(eng, name)
            except Exception as e:  # noqa: BLE001 - report and go on
                print(f"cleanup of {name} failed: {e}", file=sys.stderr)
        eng.operations.wait_idle(60)
        if cni is not None:
            cni.remove()
        eng.close()
        shutil.rmtree(root, ignore_errors=True)
    out = REPO / "bench" / "results" / f"network-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"raw samples: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
