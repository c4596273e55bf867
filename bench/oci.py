"""OCI registry pulls, side by side (never asserted).

A real registry on loopback (Debian's ``docker-registry`` with TLS and
htpasswd auth, as the tests run it: ``tests/integration/ociregistry.py``)
holds two images: A (busybox base + three data layers) and B (A's layers
but the top one). Measured, each from an empty store:

* **pull to an OCI layout**, the machinery choice of issue 13: Debian's
  ``skopeo copy docker://… oci:DIR`` (what Incus runs) against cove's own
  client (``cove.storage.registry``); then B into the same store (only its
  new layer should travel).
* **podman pull** of A then B into podman's private storage (as
  ``bench/run.py``: ``--root`` in a temporary directory), which also
  unpacks every layer.

* **launch**: ``cove launch hub:A`` cold (an empty store: pull + unpack +
  start), warm (the image here: one manifest request + start) and B after
  A, against ``podman pull`` + ``podman run -d`` the same way (warm: ``run``
  only). No NIC on either side.

Usage: ``.venv/bin/python bench/oci.py [--mib 16] [--rounds 3] [--no-launch]``
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))

from ociregistry import PASSWORD, USER, LayoutBuilder, RealRegistry, busybox_files

from cove.storage.registry import Reference, Registry


def _data(mib: int, seed: int) -> bytes:
    """Half random, half repeated text: compresses about 2:1, like binaries."""
    rnd = random.Random(seed)
    half = mib << 19
    return rnd.randbytes(half) + (b"cove bench data line\n" * (half // 21 + 1))[:half]


def build(work: Path, mib: int) -> LayoutBuilder:
    b = LayoutBuilder(work / "layout")
    base = b.layer(busybox_files())
    l1 = b.layer({"data1": _data(mib, 1)})
    l2 = b.layer({"data2": _data(mib, 2)})
    l3 = b.layer({"data3": _data(mib, 3)})
    l4 = b.layer({"data4": _data(mib // 4 or 1, 4)})
    b.tag(b.image([base, l1, l2, l3], cmd=["/bin/busybox", "sleep", "100000"]), "a")
    b.tag(b.image([base, l1, l2, l4], cmd=["/bin/busybox", "sleep", "100000"]), "b")
    return b


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _launches(reg: RealRegistry, podman: list[str], pcreds: list[str], a_ref: str,
              b_ref: str, rounds: int, record: Callable[[str, float], None]) -> None:
    """cove launch hub:A cold (empty store: pull + unpack + start), warm
    (image here: one manifest request + start) and B after A (one new
    layer); podman pull + run the same, with podman's private storage."""
    from _coved import private_coved

    secret = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def launch(coved: Any, name: str, repo: str) -> None:
        body = {"name": name, "start": True, "devices": {"eth0": {"type": "none"}},
                "source": {"type": "image", "protocol": "oci", "server": reg.url,
                           "alias": repo, "certificate": reg.ca.read_text(),
                           "secret": secret}}
        coved.made.append(name)  # removed on the way out, even if the launch fails
        r = coved.client.raw("POST", "/1.0/instances", body)
        coved.client.wait_operation(r.json()["operation"].rsplit("/", 1)[-1], 300)

    flags = ["--network", "none", "--runtime", "runc", "--systemd=false",  # as bench/run.py
             "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]
    for i in range(rounds):
        with private_coved(f"oci{i}") as coved:
            record("cove launch A cold", timed(partial(launch, coved, "cb-a1", "bench/a:1")))
            record("cove launch A warm", timed(partial(launch, coved, "cb-a2", "bench/a:1")))
            record("cove launch B (after A)",
                   timed(partial(launch, coved, "cb-b1", "bench/b:1")))
        subprocess.run([*podman, "rm", "-af", "-t", "0"], capture_output=True, check=False)
        subprocess.run([*podman, "rmi", "-af"], capture_output=True, check=False)
        for key, ref, name in (("A cold", a_ref, "pb-a1"), ("A warm", a_ref, "pb-a2"),
                               ("B (after A)", b_ref, "pb-b1")):
            t = time.perf_counter()
            if "warm" not in key:
                _run([*podman, "pull", *pcreds, ref])
            _run([*podman, "run", "-d", "--name", name, *flags, ref])
            record(f"podman pull+run {key}", time.perf_counter() - t)
        subprocess.run([*podman, "rm", "-af", "-t", "0"], capture_output=True, check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--mib", type=int, default=16, help="size of each data layer (MiB)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-launch", dest="launch", action="store_false",
                    help="pulls only (no cove launch / podman run)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="covebench-oci-"))
    reg = RealRegistry(work / "registry")
    try:
        b = build(work, args.mib)
        reg.skopeo_push(b.root, "a", "bench/a:1", all_=False)
        reg.skopeo_push(b.root, "b", "bench/b:1", all_=False)
        a_ref, b_ref = f"{reg.host}/bench/a:1", f"{reg.host}/bench/b:1"
        results: dict[str, list[float]] = {}

        def record(key: str, seconds: float) -> None:
            results.setdefault(key, []).append(seconds)

        creds = ["--src-creds", f"{USER}:{PASSWORD}", "--src-cert-dir", str(reg.cert_dir)]
        podman_root = work / "podman"
        podman = ["podman", "--root", str(podman_root / "root"), "--runroot",
                  str(podman_root / "run"), "--tmpdir", str(podman_root / "tmp"),
                  "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
                  "--events-backend", "file"]
        pcreds = ["--creds", f"{USER}:{PASSWORD}", "--cert-dir", str(reg.cert_dir), "-q"]
        for _ in range(args.rounds):
            out = work / "skopeo-out"
            shutil.rmtree(out, ignore_errors=True)
            skopeo = ["skopeo", "--insecure-policy", "copy", "-q", *creds]
            record("skopeo A", timed(partial(_run, [*skopeo, f"docker://{a_ref}", f"oci:{out}:a"])))
            record("skopeo B (after A)",
                   timed(partial(_run, [*skopeo, f"docker://{b_ref}", f"oci:{out}:b"])))
            lay = work / "cove-out"
            shutil.rmtree(lay, ignore_errors=True)
            client = Registry(reg.url, ca_file=reg.ca, credentials=(USER, PASSWORD))
            record("cove A", timed(partial(client.pull, Reference.parse("bench/a:1"), lay)))
            record("cove B (after A)",
                   timed(partial(client.pull, Reference.parse("bench/b:1"), lay)))
            record("cove A again", timed(partial(client.pull, Reference.parse("bench/a:1"), lay)))
            if shutil.which("podman"):
                subprocess.run([*podman, "rmi", "-af"], capture_output=True, check=False)
                record("podman pull A", timed(partial(_run, [*podman, "pull", *pcreds, a_ref])))
                record("podman pull B (after A)",
                       timed(partial(_run, [*podman, "pull", *pcreds, b_ref])))
        if args.launch:
            _launches(reg, podman, pcreds, a_ref, b_ref, args.rounds, record)
        size = sum(f.stat().st_size for f in (work / "cove-out" / "blobs" / "sha256").iterdir())
        print(f"images: A = busybox + 3 x {args.mib} MiB layers, B = A with another top "
              f"layer; store after A+B {size / 2**20:.1f} MiB; {args.rounds} rounds, "
              f"{os.cpu_count()} cores")
        print(f"{'what':28s} {'median s':>9s} {'min s':>7s}")
        for key, vals in results.items():
            print(f"{key:28s} {statistics.median(vals):9.3f} {min(vals):7.3f}")
    finally:
        if (work / "podman").exists():
            subprocess.run(["podman", "--root", str(work / "podman" / "root"), "--runroot",
                            str(work / "podman" / "run"), "--storage-driver", "overlay",
                            "rmi", "-af"], capture_output=True, check=False)
            subprocess.run(["umount", "-R", str(work / "podman" / "root" / "overlay")],
                           capture_output=True, check=False)
        reg.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
