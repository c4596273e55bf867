"""A real LXD for the conformance suite: installed, started and initialised here.

Everything this module makes is named ``covetest*`` (a ``dir`` storage pool,
a bridge with an explicit subnet, an image alias, instances) and removed at
the end; the default profile gets a root disk and a NIC only if it has none,
and is put back as it was. A daemon this module started is stopped at the
end; one that was already running is left running. Nothing here touches
``lxdbr0`` or anything not named ``covetest*``.

Setup as DESIGN.md found it works on this machine kind: no systemd, so
``lxd --group root`` is started by hand and ``lxd waitready`` awaited;
``lxd init --auto`` cannot pick a subnet here, so pool, bridge and profile
are made one by one. A failure at any step raises ``LxdUnavailable`` with
the step and its output, which the fixture turns into a skip that names it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from cove.client import Client, ConnectionFailed
from cove.model.errors import CoveError, NotFound

SOCKET = "/var/lib/lxd/unix.socket"
POOL = "covetest"
BRIDGE = "covetestbr0"
IMAGE = "covetest-busybox"
PREFIX = "covetest"


class LxdUnavailable(Exception):
    """LXD could not be installed, started or set up; the message says where."""


def _run(argv: list[str], timeout: float, what: str, env: dict[str, str] | None = None) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LxdUnavailable(f"{what}: {e}") from None
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        raise LxdUnavailable(f"{what}: exit {p.returncode}: {' | '.join(tail)}")
    return p.stdout


def _used_subnets() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True,
                         check=False).stdout
    nets = []
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            if word != "default":
                nets.append(ipaddress.ip_network(word, strict=False))
    return nets


def _free_subnet(taken: list[ipaddress.IPv4Network]) -> str:
    """10.219.83.1/24 unless a route overlaps it; then the next free 10.219.x."""
    for third in [83, *range(84, 250)]:
        net = ipaddress.ip_network(f"10.219.{third}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return f"10.219.{third}.1/24"
    raise LxdUnavailable("no free 10.219.x.0/24 subnet for the test bridge")


class LxdHost:
    """One LXD, set up for the suite. ``setup()`` then ``teardown()``."""

    def __init__(self, workdir: Path, busybox_tar: Path) -> None:
        self.workdir = workdir
        self.busybox_tar = busybox_tar
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "lxd.log"
        self.client = Client(SOCKET)
        self.profile_before: dict[str, Any] | None = None
        self.made: list[str] = []  # what to undo, in order of making
        self.fingerprint = ""
        self.lxd_conf = workdir / "lxdconf"  # the lxc command's config, private
        self.installed_here = False

    # -- steps ------------------------------------------------------------------------------
    def install(self) -> None:
        if shutil.which("lxd") is not None:
            return
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise LxdUnavailable("lxd is not installed, and apt-get cannot install it here")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        _run(["apt-get", "install", "-y", "-q", "lxd"], 1200, "apt-get install lxd", env)
        if shutil.which("lxd") is None:
            raise LxdUnavailable("apt-get install lxd ran, but there is no lxd command")
        self.installed_here = True

    def _answers(self) -> bool:
        try:
            self.client.server()
        except (ConnectionFailed, CoveError, OSError):
            return False
        return True

    def start(self) -> None:
        if self._answers():
            return  # somebody's LXD: used, not stopped at the end
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["lxd", "--group", "root", "--logfile",
                                          str(self.workdir / "lxd-daemon.log")],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        try:
            _run(["lxd", "waitready", "--timeout", "90"], 120, "lxd waitready")
        except LxdUnavailable:
            self.stop()
            raise
        self.client.close()
        self.client = Client(SOCKET)

    def _sync(self, method: str, path: str, body: Any = None) -> Any:
        from cove.client._http import parse_envelope

        env = parse_envelope(self.client.raw(method, path, body))
        if env.get("type") == "async":
            self.client.wait_operation(str(env["metadata"]["id"]))
        return env.get("metadata")

    def _exists(self, path: str) -> bool:
        try:
            self._sync("GET", path)
        except NotFound:
            return False
        return True

    def init(self) -> None:
        if not self._exists(f"/1.0/storage-pools/{POOL}"):
            self._sync("POST", "/1.0/storage-pools", {"name": POOL, "driver": "dir"})
            self.made.append(f"/1.0/storage-pools/{POOL}")
        if not self._exists(f"/1.0/networks/{BRIDGE}"):
            self._sync("POST", "/1.0/networks", {"name": BRIDGE, "type": "bridge", "config": {
                "ipv4.address": _free_subnet(_used_subnets()), "ipv4.nat": "true",
                "ipv6.address": "none"}})
            self.made.append(f"/1.0/networks/{BRIDGE}")
        profile = self._sync("GET", "/1.0/profiles/default")
        devices = dict(profile.get("devices") or {})
        want = dict(devices)
        if not any(d.get("type") == "disk" and d.get("path") == "/" for d in devices.values()):
            want["root"] = {"type": "disk", "path": "/", "pool": POOL}
        if not any(d.get("type") == "nic" for d in devices.values()):
            want["eth0"] = {"type": "nic", "network": BRIDGE, "name": "eth0"}
        if want != devices:
            self.profile_before = {k: profile.get(k) for k in ("config", "description",
                                                               "devices")}
            self._sync("PUT", "/1.0/profiles/default",
                       {"config": profile.get("config") or {},
                        "description": profile.get("description") or "",
                        "devices": want})

    def import_image(self) -> None:
        with contextlib.suppress(NotFound):
            old = self.client.alias(IMAGE)
            self.client.delete_image(str(old["target"])).wait()
        self.fingerprint = self.client.import_image(str(self.busybox_tar), aliases=[IMAGE])

    def setup(self) -> None:
        self.lxd_conf.mkdir(exist_ok=True)
        self.install()
        self.start()
        try:
            self.init()
            self.import_image()
        except (CoveError, OSError) as e:
            self.teardown()
            raise LxdUnavailable(f"setting LXD up failed: {e}") from None

    # -- the end ------------------------------------------------------------------------------
    def instances(self) -> list[str]:
        names = self._sync("GET", "/1.0/instances") or []
        return [n.rsplit("/", 1)[-1] for n in names
                if n.rsplit("/", 1)[-1].startswith(PREFIX)]

    def teardown(self) -> list[str]:
        """Remove what the suite made; return what went wrong (for the report)."""
        problems: list[str] = []
        if self._answers():
            for name in self.instances():
                try:
                    with contextlib.suppress(CoveError):
                        self.client.change_state(name, "stop", force=True).wait(60)
                    self.client.delete_instance(name).wait(60)
                except CoveError as e:
                    problems.append(f"instance {name}: {e}")
            if self.fingerprint:
                with contextlib.suppress(NotFound):
                    self.client.delete_image(self.fingerprint).wait(60)
            if self.profile_before is not None:
                try:
                    self._sync("PUT", "/1.0/profiles/default", self.profile_before)
                except CoveError as e:
                    problems.append(f"default profile: {e}")
            for path in reversed(self.made):
                try:
                    self._sync("DELETE", path)
                except CoveError as e:
                    problems.append(f"{path}: {e}")
        self.stop()
        return problems

    def stop(self) -> None:
        """Stop the daemon if this module started it."""
        if self.proc is None:
            return
        self.client.close()
        with contextlib.suppress(LxdUnavailable):
            _run(["lxd", "shutdown", "--timeout", "60"], 90, "lxd shutdown")
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        # lxd leaves its dnsmasq for the bridge and its forkfile helpers behind
        # only while bridges exist; by now the bridge is gone.
        time.sleep(0.1)

    def describe(self) -> str:
        info = self.client.server()["environment"]
        return f"LXD {info.get('server_version')} ({'started by the suite' if self.proc else 'already running'})"
