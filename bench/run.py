#!/usr/bin/env python3
"""cove against its peers, side by side, in one run, on one busybox rootfs.

Usage: ``sudo .venv/bin/python bench/run.py [--runs N] [--list-runs N] [--install]``

What is timed: the wall clock of one command, medians of N runs, for
launch to RUNNING, launch with a NIC and a published port, exec ``true``,
forced stop, start, graceful stop, a one-shot run of ``true`` (peers only),
list with 100 running, and cove's launches again with 200 of its instances
running (each with a NIC and a port); every side runs the same busybox
``/sbin/init`` from the same rootfs, with no network except in the "NIC +
port" rows. ``bench/README.md`` has the table of commands on each side.

A "cove API" column makes the same calls through cove's Python client in
this process, so the difference to the CLI column is what the ``cove``
process itself costs (interpreter, imports, connecting). The ratios printed
are cove (CLI) / peer. Peers run round-robin (one launch of each, then the
next; each round starts one peer further on), so load from elsewhere on the
machine, and what the previous command left, hits them alike.

Everything made here is removed at the end, also on failure or Ctrl-C: the
cove root (``/tmp/covebench-XXXX``), runc's and podman's private state
(``/tmp/covebench-work-XXXX``), and in LXD the containers, image, profile and
storage pool named ``covebench-TAG`` (and its network ``covebenchTAG`` and
profile ``covebench-TAG-nic`` for the NIC + port row). An LXD daemon the
bench had to start is shut down again if no other instance lives in it.
lxdbr0 is never touched. podman's "NIC + port" launches use its default
network (CNI here): what that leaves on the host when its containers are
gone and did not exist before the run (``cni-podman0``, iptables-nft tables
holding only CNI's skeleton chains, ``/var/lib/cni``) is removed, anything
else is reported (``HostNet``). ``--install`` installs podman and lxd with
apt-get first.

Results go to ``bench/results/<time>.json`` (raw samples and medians).
Nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import importlib.util
import io
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

REPO = Path(__file__).resolve().parents[1]
VENV_PY = REPO / ".venv" / "bin" / "python"
CGROUP_ROOT = Path("/sys/fs/cgroup")

DEVNULL = subprocess.DEVNULL


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(argv: list[str], *, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command, stdin from /dev/null, output captured (untimed helper)."""
    p = subprocess.run(argv, stdin=DEVNULL, capture_output=True, text=True, env=env,
                       timeout=timeout, check=False)
    if check and p.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {p.returncode}: "
                         f"{(p.stderr or p.stdout).strip()[-500:]}")
    return p


_ERR = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process


def quiet(argv: list[str], env: dict[str, str] | None = None) -> None:
    """The timed way to run a command: output to /dev/null, stderr kept for errors.

    stderr goes to a file, not a pipe: a detached container (``runc run -d``)
    inherits it and would hold a pipe open long after the command returned.
    The wait is a plain blocking ``wait()``: with a timeout, Python 3.11's
    ``Popen.wait`` polls with sleeps that grow to 50 ms, which rounds every
    time up to the next poll (0.5 + 1 + 2 + ... ms: 64, 114, 164 ms). A timer
    thread kills a command that hangs instead.
    """
    _ERR.seek(0)
    _ERR.truncate()
    proc = subprocess.Popen(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=_ERR, env=env)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        rc = proc.wait()
    finally:
        watchdog.cancel()
    if rc != 0:
        _ERR.seek(0)
        err = _ERR.read().decode(errors="replace").strip()[-500:]
        raise BenchError(f"{' '.join(argv)} exited {rc}: {err}")


def mounts_under(path: Path) -> list[str]:
    base = str(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == base or mp.startswith(base + "/"):
                out.append(mp)
    return out


def remove_tree(path: Path) -> list[str]:
    """Unmount whatever is mounted under ``path`` (deepest first), then delete it.
    Returns what had to be unmounted (nothing, when every tool cleaned up)."""
    forced = []
    for mp in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], stdin=DEVNULL, capture_output=True, check=False)
        forced.append(f"umount {mp}")
    shutil.rmtree(path, ignore_errors=True)
    return forced


# -- host ports, subnets and what podman's CNI leaves ----------------------------------

def listening_ports() -> set[int]:
    """TCP ports something on the host listens on (IPv4 and IPv6)."""
    out = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(path).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[3] == "0A":
                out.add(int(parts[1].rsplit(":", 1)[1], 16))
    return out


class Ports:
    """Host ports to publish: one per launch, none a host process listens on,
    from a range of this run's own (the tag picks it)."""

    def __init__(self, tag: str) -> None:
        self.next = 20000 + (int(tag, 16) % 40) * 250

    def take(self) -> int:
        busy = listening_ports()
        while self.next in busy:
            self.next += 1
        self.next += 1
        return self.next - 1


def free_subnet(prefix: str = "10.223") -> str:
    """A ``prefix.X.0/24`` no route (any table) or address of the host overlaps."""
    import ipaddress

    used = []
    for argv in (["ip", "-j", "-4", "route", "show", "table", "all"], ["ip", "-j", "-4", "addr"]):
        for item in json.loads(run(argv).stdout or "[]"):
            dst = item.get("dst")
            if dst and dst != "default":
                used.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32",
                                                 strict=False))
            for a in item.get("addr_info", []):
                used.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}",
                                                 strict=False))
    start = secrets.randbelow(256)
    for k in range(256):
        net = ipaddress.ip_network(f"{prefix}.{(start + k) % 256}.0/24")
        if not any(net.overlaps(u) for u in used if u.version == 4):
            return str(net)
    raise BenchError(f"no free {prefix}.X.0/24 on this host")


class HostNet:
    """What podman's default network (CNI: bridge, portmap, firewall) makes on
    the host beside its containers, and leaves when they are gone: the
    ``cni-podman0`` bridge, iptables-nft tables with CNI's empty skeleton
    chains, and ``/var/lib/cni``. Taken before the run; at the end, whatever
    of that did not exist before and holds nothing of a live container (no
    bridge port, no per-container chain, no address reservation) is
    removed, and anything else is reported, never touched."""

    TABLES = (("ip", "nat"), ("ip", "filter"), ("ip6", "nat"), ("ip6", "filter"))
    BASE_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
    SKELETON = frozenset({"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ",
                          "CNI-FORWARD", "CNI-ADMIN"})
    BRIDGE = "cni-podman0"
    STATE = Path("/var/lib/cni")

    def __init__(self) -> None:
        self.tables = self._tables()
        self.bridge = Path(f"/sys/class/net/{self.BRIDGE}").exists()
        self.state = self.STATE.exists()

    @staticmethod
    def _tables() -> set[tuple[str, str]]:
        p = run(["nft", "-j", "list", "tables"], check=False)
        items = json.loads(p.stdout or "{}").get("nftables", [])
        return {(t["table"]["family"], t["table"]["name"]) for t in items if "table" in t}

    def _skeleton_only(self, family: str, name: str) -> bool:
        p = run(["nft", "-j", "list", "table", family, name], check=False)
        for item in json.loads(p.stdout or "{}").get("nftables", []):
            if "chain" in item:
                chain = item["chain"]["name"]
                if chain not in self.BASE_CHAINS | self.SKELETON:
                    return False  # a per-container chain, or somebody else's
            elif "rule" in item:
                rule = item["rule"]
                if rule["chain"] in self.SKELETON:
                    continue
                jumps = [e["jump"]["target"] for e in rule.get("expr", []) if "jump" in e]
                if not jumps or jumps[0] not in self.SKELETON:
                    return False
        return True

    def restore(self) -> list[str]:
        done: list[str] = []
        for family, name in sorted(self._tables() - self.tables):
            if (family, name) not in self.TABLES:
                continue
            if self._skeleton_only(family, name):
                run(["nft", "delete", "table", family, name], check=False)
                done.append(f"removed table {family} {name} (podman's CNI skeleton)")
            else:
                done.append(f"left table {family} {name}: it holds more than CNI's skeleton")
        br = Path(f"/sys/class/net/{self.BRIDGE}")
        if not self.bridge and br.exists():
            if list((br / "brif").iterdir()):
                done.append(f"left {self.BRIDGE}: containers are on it")
            else:
                run(["ip", "link", "del", self.BRIDGE], check=False)
                done.append(f"removed {self.BRIDGE} (made by podman's CNI)")
        if not self.state and self.STATE.exists():
            kept = [str(f) for f in self.STATE.rglob("*") if f.is_file()
                    and f.name != "lock" and not f.name.startswith("last_reserved_ip")]
            if kept:
                done.append(f"left {self.STATE}: {', '.join(kept[:3])}")
            else:
                shutil.rmtree(self.STATE, ignore_errors=True)
                done.append(f"removed {self.STATE} (podman's CNI state, empty)")
        return done


# -- the image ------------------------------------------------------------------------

def load_mkbusybox() -> Any:
    spec = importlib.util.spec_from_file_location("mkbusybox", REPO / "scripts" / "mkbusybox.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Artifacts:
    """The one busybox rootfs in the forms each tool takes."""

    def __init__(self, work: Path, tag: str) -> None:
        mk = load_mkbusybox()
        self.plain = mk.build_busybox_image(work / "busybox-rootfs.tar.gz", plain=True)
        unified = mk.build_busybox_image(work / "busybox-lxd.tar.gz")
        # A description of this run's own makes the LXD fingerprint unique, so
        # the import never meets an image someone else imported, and the
        # delete at the end removes only ours. The rootfs is untouched.
        self.unified = work / "busybox.tar.gz"
        self._retag(unified, self.unified, tag)
        self.rootfs = work / "rootfs"
        self.rootfs.mkdir()
        run(["tar", "-xzf", str(self.plain), "-C", str(self.rootfs)])
        self.fingerprint = hashlib.sha256(self.unified.read_bytes()).hexdigest()

    @staticmethod
    def _retag(src: Path, dst: Path, tag: str) -> None:
        with tarfile.open(src, "r:gz") as tin:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tout:
                for m in tin:
                    data = tin.extractfile(m) if m.isreg() else None
                    if m.name == "metadata.yaml" and data is not None:
                        text = data.read().decode()
                        text = re.sub(r'(description: ".*?)"', rf'\1 [covebench {tag}]"', text)
                        raw = text.encode()
                        m.size = len(raw)
                        data = io.BytesIO(raw)
                    tout.addfile(m, data)
        with open(dst, "wb") as raw_out, gzip.GzipFile(filename="", mode="wb", mtime=0,
                                                        fileobj=raw_out) as gz:
            gz.write(buf.getvalue())


# -- peers ------------------------------------------------------------------------------
# Each peer turns an operation on a container name into one action; the driver
# times the call. An operation a peer lacks is None.

class Peer:
    key = ""
    title = ""
    commands: ClassVar[dict[str, str]] = {}

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.ports = Ports(tag)  # replaced by the run's shared one

    def name(self, i: int | str) -> str:
        return f"covebench-{self.tag}-{i}"

    def version(self) -> str:
        return ""

    def setup(self, art: Artifacts) -> None:
        pass

    def op(self, op: str) -> Callable[[str], None] | None:
        return getattr(self, f"do_{op}", None)

    def delete_many(self, names: list[str]) -> None:
        for n in names:
            self.delete(n)

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def teardown(self) -> list[str]:
        return []


class CoveCLI(Peer):
    key, title = "cove", "cove"
    commands: ClassVar[dict[str, str]] = {
        "launch": "cove launch -n none", "launch_port": "cove launch -p PORT:80",
        "exec": "cove exec NAME -- true",
        "stop_force": "cove stop --force", "start": "cove start", "stop": "cove stop",
        "list": "cove list"}

    def __init__(self, tag: str, root: Path) -> None:
        super().__init__(tag)
        self.root = root
        cli = REPO / ".venv" / "bin" / "cove"
        self.cli = str(cli) if cli.exists() else (shutil.which("cove") or "cove")
        self.env = dict(os.environ, COVE_DIR=str(root), COVE_NO_AUTOSTART="1")
        # as installed: the CLI's bytecode cached (pip compiles it), not
        # compiled again on every run from sources edited since the last one
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.started = False
        self.notes: list[str] = []  # cove misbehaviour worked around, for the report
        self.no_nic = False
        self.launch_args: list[str] = []

    def name(self, i: int | str) -> str:
        return f"c{i}"

    def cove(self, *args: str) -> None:
        quiet([self.cli, *args], env=self.env)

    def version(self) -> str:
        return run([self.cli, "--version"]).stdout.strip()

    def setup(self, art: Artifacts) -> None:
        # The first command starts coved (not timed); the rest never may.
        env = dict(self.env)
        env.pop("COVE_NO_AUTOSTART")
        run([self.cli, "image", "import", str(art.unified), "--alias", "busybox"], env=env)
        self.started = True
        # Like the peers, no network: once cove gives instances a NIC by
        # default, ask for none (``--network none``, an ``eth0`` of type none).
        self.no_nic = "--network" in run([self.cli, "launch", "--help"]).stdout
        self.launch_args = ["--network", "none"] if self.no_nic else []

    def do_launch(self, n: str) -> None:
        self.cove("launch", "busybox", n, *self.launch_args)

    def do_launch_port(self, n: str) -> None:
        """eth0 on the root's default network and one published port."""
        self.cove("launch", "busybox", n, "-p", f"{self.ports.take()}:80")

    do_launch_scaled = do_launch
    do_launch_port_scaled = do_launch_port

    def do_exec(self, n: str) -> None:
        self.cove("exec", n, "--", "true")

    def do_stop_force(self, n: str) -> None:
        self.cove("stop", "--force", n)

    def do_start(self, n: str) -> None:
        self.cove("start", n)

    def do_stop(self, n: str) -> None:
        self.cove("stop", "--timeout", "30", n)

    def do_list(self, _: str) -> None:
        self.cove("list")

    def delete(self, name: str) -> None:
        self.cove("delete", "--force", name)

    def delete_many(self, names: list[str]) -> None:
        for i in range(0, len(names), 25):
            batch = names[i:i + 25]
            try:
                self.cove("delete", "--force", *batch)
            except BenchError as e:
                # Seen here: "NAME is busy: operation ... (Stopping instance) is
                # in flight" right after that stop's operation said it was done.
                # Noted in the results; what is left is deleted one by one.
                self.notes.append(str(e).rsplit("Error: ", 1)[-1])
                time.sleep(0.5)
                listed = json.loads(run([self.cli, "list", "-f", "json"], env=self.env).stdout)
                left = {inst["name"] for inst in listed}
                for n in batch:
                    if n in left:
                        self.cove("delete", "--force", n)

    def coved_pid(self) -> int | None:
        try:
            return int((self.root / "coved.lock").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def alive(self) -> bool:
        pid = self.coved_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def teardown(self) -> list[str]:
        problems: list[str] = []
        if self.started and not self.alive():
            problems.append("coved was gone before the end")
        if problems or self.notes:  # keep coved's own account of it
            dest = REPO / "bench" / "results" / f"coved-{self.tag}.log"
            dest.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copyfile(self.root / "coved.log", dest)
                problems.append(f"coved's log kept as {dest.relative_to(REPO)}")
        if self.started:
            try:
                names = json.loads(run([self.cli, "list", "-f", "json"], env=self.env).stdout)
                left = [i["name"] for i in names]
                if left:
                    self.delete_many(left)
                run([self.cli, "image", "delete", "busybox"], env=self.env, check=False)
            except (BenchError, ValueError, subprocess.TimeoutExpired) as e:
                problems.append(f"cove cleanup: {e}")
        pid = self.coved_pid()
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
                for _ in range(200):
                    os.kill(pid, 0)
                    time.sleep(0.05)
                problems.append(f"coved {pid} did not stop on SIGTERM")
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # cove names its cgroup parent after its root; remove it if cove left it.
        parent = "cove-" + hashlib.sha256(str(self.root).encode()).hexdigest()[:8]
        for h in CGROUP_ROOT.iterdir():
            d = h / parent
            if d.is_dir():
                for sub in sorted(d.rglob("*"), key=lambda p: len(str(p)), reverse=True):
                    if sub.is_dir():
                        try:
                            sub.rmdir()
                            problems.append(f"left cgroup {sub}")
                        except OSError:
                            pass
                try:
                    d.rmdir()
                except OSError as e:
                    problems.append(f"cannot remove cgroup {d}: {e}")
        problems += remove_tree(self.root)
        return problems


class CoveAPI(Peer):
    """The same coved, driven through cove's client in this process."""

    key, title = "api", "cove API"
    commands: ClassVar[dict[str, str]] = {
        "launch": "POST /1.0/instances start=true, eth0 none",
        "launch_port": "POST /1.0/instances start=true, proxy device",
        "exec": "POST .../exec + websockets", "stop_force": "PUT .../state stop force",
        "start": "PUT .../state start", "stop": "PUT .../state stop",
        "list": "GET /1.0/instances?recursion=2"}

    def __init__(self, tag: str, root: Path, cli: CoveCLI) -> None:
        super().__init__(tag)
        self.root = root
        self.cli = cli
        self.client: Any = None
        self.devices: dict[str, dict[str, str]] | None = None

    def name(self, i: int | str) -> str:
        return f"a{i}"

    def setup(self, art: Artifacts) -> None:
        from cove.client import Client

        self.client = Client(str(self.root / "unix.socket"))
        if self.cli.no_nic:
            self.devices = {"eth0": {"type": "none"}}

    def do_launch(self, n: str) -> None:
        self.client.create_instance(n, {"type": "image", "alias": "busybox"},
                                    devices=self.devices, start=True).wait()

    def do_launch_port(self, n: str) -> None:
        proxy = {"type": "proxy", "listen": f"tcp:0.0.0.0:{self.ports.take()}",
                 "connect": "tcp:0.0.0.0:80", "nat": "true"}
        op = self.client.create_instance(n, {"type": "image", "alias": "busybox"},
                                         devices={"p": proxy}, start=True)
        op.wait()

    do_launch_scaled = do_launch
    do_launch_port_scaled = do_launch_port

    def do_exec(self, n: str) -> None:
        res = self.client.exec(n, ["true"])
        if res.exit_code != 0:
            raise BenchError(f"exec in {n} exited {res.exit_code}")

    def do_stop_force(self, n: str) -> None:
        self.client.change_state(n, "stop", force=True).wait()

    def do_start(self, n: str) -> None:
        self.client.change_state(n, "start").wait()

    def do_stop(self, n: str) -> None:
        self.client.change_state(n, "stop", timeout=30).wait()

    def do_list(self, _: str) -> None:
        self.client.instances(2)

    def delete(self, name: str) -> None:
        if self.client.instance(name).get("status") != "Stopped":
            self.client.change_state(name, "stop", force=True).wait()
        self.client.delete_instance(name).wait()

    def teardown(self) -> list[str]:
        if self.client is not None:
            self.client.close()
        return []  # CoveCLI removes the root and whatever is left in it


class Runc(Peer):
    key, title = "runc", "runc"
    commands: ClassVar[dict[str, str]] = {
        "launch": "runc run -d", "exec": "runc exec NAME true",
        "stop_force": "runc delete --force", "start": "runc run -d",
        "stop": "runc kill TERM, wait, runc delete", "oneshot": "runc run (/bin/true)",
        "list": "runc list"}

    def __init__(self, tag: str, work: Path) -> None:
        super().__init__(tag)
        self.work = work / "runc"
        self.state = self.work / "state"
        self.runc = shutil.which("runc") or "runc"

    def version(self) -> str:
        return run([self.runc, "--version"]).stdout.splitlines()[0]

    def _bundle(self, rootfs: Path, args: list[str], where: Path) -> Path:
        where.mkdir(parents=True)
        run([self.runc, "spec", "--bundle", str(where)])
        cfg_path = where / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["root"] = {"path": str(rootfs), "readonly": True}  # shared by all
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = args
        cfg["hostname"] = "runc"
        cfg_path.write_text(json.dumps(cfg, indent=1))
        return where

    def setup(self, art: Artifacts) -> None:
        self.state.mkdir(parents=True)
        self.init_bundle = self._bundle(art.rootfs, ["/sbin/init"], self.work / "init")
        self.true_bundle = self._bundle(art.rootfs, ["/bin/true"], self.work / "true")

    def r(self, *args: str) -> None:
        quiet([self.runc, "--root", str(self.state), *args])

    def do_launch(self, n: str) -> None:
        self.r("run", "-d", "--bundle", str(self.init_bundle), n)

    do_start = do_launch

    def do_exec(self, n: str) -> None:
        self.r("exec", n, "true")

    def do_stop_force(self, n: str) -> None:
        self.r("delete", "--force", n)

    def do_stop(self, n: str) -> None:
        self.r("kill", n, "TERM")
        deadline = time.monotonic() + 30
        while True:
            p = run([self.runc, "--root", str(self.state), "state", n])
            if json.loads(p.stdout)["status"] == "stopped":
                break
            if time.monotonic() > deadline:
                raise BenchError(f"runc container {n} did not stop on SIGTERM in 30 s")
            time.sleep(0.01)
        self.r("delete", n)

    def do_oneshot(self, n: str) -> None:
        self.r("run", "--bundle", str(self.true_bundle), n)

    def do_list(self, _: str) -> None:
        self.r("list")

    def delete(self, name: str) -> None:
        subprocess.run([self.runc, "--root", str(self.state), "delete", "--force", name],
                       stdin=DEVNULL, capture_output=True, check=False)

    def teardown(self) -> list[str]:
        problems = []
        if self.state.is_dir():
            for d in self.state.iterdir():
                problems.append(f"runc container {d.name} left")
                self.delete(d.name)
        return problems + remove_tree(self.work)


class Podman(Peer):
    key, title = "podman", "podman"
    flags: ClassVar[list[str]] = [
             "--network", "none", "--runtime", "runc", "--ulimit", "nofile=1024:1024",
             "--ulimit", "nproc=1000:1000",
             # podman treats an /sbin/init command as systemd and would stop it
             # with SIGRTMIN+3, which busybox init ignores; SIGTERM as elsewhere.
             "--systemd=false"]
    commands: ClassVar[dict[str, str]] = {
        "launch": "podman run -d", "launch_port": "podman run -d -p PORT:80 (default bridge)",
        "exec": "podman exec NAME true",
        "stop_force": "podman stop -t 0", "start": "podman start",
        "stop": "podman stop", "oneshot": "podman run --rm (/bin/true)",
        "list": "podman ps -a"}

    def __init__(self, tag: str, work: Path) -> None:
        super().__init__(tag)
        self.work = work / "podman"
        # Private storage: nothing of the host's podman is touched or counted.
        self.base = [shutil.which("podman") or "podman",
                     "--root", str(self.work / "root"), "--runroot", str(self.work / "run"),
                     "--tmpdir", str(self.work / "tmp"), "--storage-driver", "overlay",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        self.image = f"localhost/covebench-{tag}:latest"
        # podman's cgroupfs manager makes this parent on first use and leaves it.
        self.libpod_parent = [h / "libpod_parent" for h in CGROUP_ROOT.iterdir()
                              if not (h / "libpod_parent").exists()]

    def version(self) -> str:
        return run([self.base[0], "--version"]).stdout.strip()

    def p(self, *args: str) -> None:
        quiet([*self.base, *args])

    def setup(self, art: Artifacts) -> None:
        self.work.mkdir(parents=True)
        run([*self.base, "import", str(art.plain), self.image])

    def do_launch(self, n: str) -> None:
        self.p("run", "-d", "--name", n, *self.flags, self.image, "/sbin/init")

    def do_launch_port(self, n: str) -> None:
        """podman's default network (CNI bridge + portmap + firewall here)."""
        flags = [f for i, f in enumerate(self.flags)
                 if "--network" not in (f, self.flags[i - 1] if i else "")]
        self.p("run", "-d", "--name", n, "-p", f"{self.ports.take()}:80", *flags, self.image,
               "/sbin/init")

    def do_exec(self, n: str) -> None:
        self.p("exec", n, "true")

    def do_stop_force(self, n: str) -> None:
        self.p("stop", "-t", "0", n)

    def do_start(self, n: str) -> None:
        self.p("start", n)

    def do_stop(self, n: str) -> None:
        self.p("stop", n)

    def do_oneshot(self, n: str) -> None:
        self.p("run", "--rm", *self.flags, self.image, "/bin/true")

    def do_list(self, _: str) -> None:
        self.p("ps", "-a")

    def delete(self, name: str) -> None:
        self.p("rm", "-f", "-t", "0", name)

    def teardown(self) -> list[str]:
        problems = []
        if (self.work / "root").exists():
            p = run([*self.base, "ps", "-aq"], check=False)
            if p.stdout.strip():
                problems.append(f"podman containers left: {len(p.stdout.split())}")
            run([*self.base, "rm", "-af", "-t", "0"], check=False)
            run([*self.base, "rmi", "-af"], check=False)
        for d in self.libpod_parent:  # with its conmon/ child, deepest first
            if not d.exists():
                continue
            for sub in sorted((x for x in d.rglob("*") if x.is_dir()),
                              key=lambda x: len(x.parts), reverse=True) + [d]:
                try:
                    sub.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    problems.append(f"cannot remove {sub}: {e}")
        return problems + remove_tree(self.work)


class Lxd(Peer):
    key, title = "lxd", "LXD"
    commands: ClassVar[dict[str, str]] = {
        "launch": "lxc launch -p NO-NIC",
        "launch_port": "lxc launch -p NIC + lxc config device add proxy",
        "exec": "lxc exec NAME -- true",
        "stop_force": "lxc stop --force", "start": "lxc start", "stop": "lxc stop",
        "list": "lxc list"}

    def __init__(self, tag: str, work: Path) -> None:
        super().__init__(tag)
        self.work = work / "lxd"
        self.lxc = shutil.which("lxc") or "lxc"
        self.lxd = shutil.which("lxd") or "lxd"
        # A private client config: its default remote is the local daemon,
        # whatever remotes (a cove socket, say) the user's own config has.
        self.env = dict(os.environ, LXD_CONF=str(self.work / "conf"))
        self.pool = self.profile = self.alias = f"covebench-{tag}"
        self.nic_profile = f"covebench-{tag}-nic"
        self.network = f"covebench{tag}"  # a bridge name: 15 characters at most
        self.started_daemon = False
        self.have_pool = self.have_profile = self.have_image = False
        self.have_network = self.have_nic_profile = False

    def version(self) -> str:
        return "lxd " + run([self.lxd, "--version"]).stdout.strip()

    def c(self, *args: str) -> None:
        quiet([self.lxc, *args], env=self.env)

    def running(self) -> bool:
        return run([self.lxd, "waitready", "--timeout", "1"], check=False).returncode == 0

    def setup(self, art: Artifacts) -> None:
        (self.work / "conf").mkdir(parents=True)
        if not self.running():
            log("starting LXD (lxd --group root)")
            with open(self.work / "lxd.log", "ab") as logf:
                subprocess.Popen([self.lxd, "--group", "root"], stdin=DEVNULL, stdout=logf,
                                 stderr=logf, start_new_session=True, cwd="/")
            self.started_daemon = True
            run([self.lxd, "waitready", "--timeout", "60"], timeout=90)
        self.c("storage", "create", self.pool, "dir")
        self.have_pool = True
        self.c("profile", "create", self.profile)
        self.have_profile = True
        self.c("profile", "device", "add", self.profile, "root", "disk", "path=/",
               f"pool={self.pool}")
        self.c("image", "import", str(art.unified), "--alias", self.alias)
        self.have_image = True
        self.fingerprint = art.fingerprint
        # A bridge of the bench's own (lxdbr0 is never touched), with an explicit
        # subnet: LXD 5.0's "auto" fails on hosts with many private routes.
        subnet = free_subnet()
        gw = subnet.replace(".0/24", ".1/24")
        self.c("network", "create", self.network, f"ipv4.address={gw}", "ipv4.nat=false",
               "ipv6.address=none")
        self.have_network = True
        self.c("profile", "copy", self.profile, self.nic_profile)
        self.have_nic_profile = True
        self.c("profile", "device", "add", self.nic_profile, "eth0", "nic",
               f"network={self.network}", "name=eth0")

    def do_launch(self, n: str) -> None:
        self.c("launch", self.alias, n, "--profile", self.profile)

    def do_launch_port(self, n: str) -> None:
        self.c("launch", self.alias, n, "--profile", self.nic_profile)
        self.c("config", "device", "add", n, "p", "proxy",
               f"listen=tcp:127.0.0.1:{self.ports.take()}", "connect=tcp:127.0.0.1:80")

    def do_exec(self, n: str) -> None:
        self.c("exec", n, "--", "true")

    def do_stop_force(self, n: str) -> None:
        self.c("stop", "--force", n)

    def do_start(self, n: str) -> None:
        self.c("start", n)

    def do_stop(self, n: str) -> None:
        self.c("stop", "--timeout", "30", n)

    def do_list(self, _: str) -> None:
        self.c("list", f"covebench-{self.tag}-")

    def delete(self, name: str) -> None:
        self.delete_many([name])

    def delete_many(self, names: list[str]) -> None:
        for i in range(0, len(names), 25):
            self.c("delete", "--force", *names[i:i + 25])

    def ours(self) -> list[str]:
        p = run([self.lxc, "list", "--format", "csv", "-c", "n"], env=self.env, check=False)
        return [n for n in p.stdout.split() if n.startswith(f"covebench-{self.tag}-")]

    def teardown(self) -> list[str]:
        problems: list[str] = []
        if self.running():
            left = self.ours()
            if left:
                problems.append(f"LXD instances left: {len(left)}")
                try:
                    self.delete_many(left)
                except BenchError as e:
                    problems.append(str(e))
            steps = []
            if self.have_image:
                steps.append(["image", "delete", self.fingerprint])
            if self.have_nic_profile:
                steps.append(["profile", "delete", self.nic_profile])
            if self.have_network:
                steps.append(["network", "delete", self.network])
            if self.have_profile:
                steps.append(["profile", "delete", self.profile])
            if self.have_pool:
                steps.append(["storage", "delete", self.pool])
            for step in steps:
                p = run([self.lxc, *step], env=self.env, check=False)
                if p.returncode != 0:
                    problems.append(f"lxc {' '.join(step)}: {p.stderr.strip()}")
            if self.started_daemon:
                p = run([self.lxc, "list", "--all-projects", "--format", "csv", "-c", "n"],
                        env=self.env, check=False)
                if p.returncode == 0 and not p.stdout.strip():
                    log("shutting down the LXD daemon the bench started")
                    run([self.lxd, "shutdown", "--timeout", "60"], check=False, timeout=90)
                else:
                    log("leaving the LXD daemon running: other instances live in it")
        return problems + remove_tree(self.work)


# -- measuring -------------------------------------------------------------------------

ROWS = [
    ("launch", "launch to RUNNING"),
    ("launch_port", "launch, NIC + port"),
    ("exec", "exec true"),
    ("stop_force", "stop --force"),
    ("start", "start (stopped)"),
    ("stop", "stop (graceful)"),
    ("oneshot", "run true, to exit"),
    ("list", "list, N running"),
    ("launch_scaled", "launch, S running"),
    ("launch_port_scaled", "launch, NIC + port, S running"),
]


class Bench:
    def __init__(self, peers: list[Peer]) -> None:
        self.peers = peers
        self.samples: dict[str, dict[str, list[float]]] = {op: {} for op, _ in ROWS}

    def time(self, op: str, peer: Peer, name: str) -> None:
        fn = peer.op(op)
        assert fn is not None
        t0 = time.perf_counter()
        fn(name)
        self.samples[op].setdefault(peer.key, []).append(time.perf_counter() - t0)

    def round_robin(self, op: str, names: list[int | str]) -> None:
        """Each round runs every peer once, starting one peer further on each
        time, so no peer always follows the same one: what one leaves behind
        (a kernel's cgroup move lock still warm from the last launch cuts
        the next ``runc`` start by 5-10 ms here, or load of its own) falls
        on each in turn."""
        for j, i in enumerate(names):
            k = j % len(self.peers) if self.peers else 0
            for p in self.peers[k:] + self.peers[:k]:
                if p.op(op) is not None:
                    self.time(op, p, p.name(i))

    def warm_up(self) -> None:
        """One untimed cycle per peer: first-use caches and lazy setup stay out."""
        for p in self.peers:
            n = p.name("warm")
            for op in ("launch", "exec", "stop_force"):
                fn = p.op(op)
                if fn:
                    fn(n)
            p.delete(n)
            port = p.op("launch_port")
            if port:
                port(p.name("warmp"))
                p.delete(p.name("warmp"))
            if p.op("oneshot"):
                p.op("oneshot")(p.name("warm1"))  # type: ignore[misc]

    def lifecycle(self, runs: int, stop_runs: int) -> None:
        idx: list[int | str] = list(range(runs))
        log(f"launch x{runs}")
        self.round_robin("launch", idx)
        log(f"exec x{runs}")
        self.round_robin("exec", idx)
        log(f"stop --force x{runs}")
        self.round_robin("stop_force", idx)
        log(f"start x{runs}")
        self.round_robin("start", idx)
        log(f"graceful stop x{stop_runs} (busybox init takes its time)")
        self.round_robin("stop", idx[:stop_runs])
        for p in self.peers:
            p.delete_many([p.name(i) for i in idx])
        log(f"run true x{runs}")
        self.round_robin("oneshot", [f"o{i}" for i in range(runs)])
        log(f"launch with a NIC and a published port x{runs}")
        pidx: list[int | str] = [f"p{i}" for i in range(runs)]
        self.round_robin("launch_port", pidx)
        for p in self.peers:
            if p.op("launch_port") is not None:
                p.delete_many([p.name(i) for i in pidx])

    def scaled(self, count: int, runs: int) -> None:
        """cove's launches again with ``count`` instances running, each with a
        NIC and a published port (the issue's "200 running" figure)."""
        coves = [p for p in self.peers if p.op("launch_port_scaled") is not None]
        if not coves:
            return
        first = coves[0]
        idx = [f"s{i}" for i in range(count)]
        log(f"cove: launching {count} with a NIC and a port")
        for i in idx:
            first.op("launch_port")(first.name(i))  # type: ignore[misc]
        log(f"launch x{runs} with {count} running")
        sidx: list[int | str] = [f"x{i}" for i in range(runs)]
        self.round_robin("launch_scaled", sidx)
        for p in coves:
            p.delete_many([p.name(i) for i in sidx])
        pidx: list[int | str] = [f"y{i}" for i in range(runs)]
        self.round_robin("launch_port_scaled", pidx)
        for p in coves:
            p.delete_many([p.name(i) for i in pidx])
        log(f"cove: deleting {count}")
        first.delete_many([first.name(i) for i in idx])

    def listing(self, count: int, runs: int) -> None:
        idx = [f"l{i}" for i in range(count)]
        for p in self.peers:
            if p.key == "api":
                continue  # lists the cove CLI's instances: same coved
            log(f"{p.title}: launching {count} for list")
            for i in idx:
                p.op("launch")(p.name(i))  # type: ignore[misc]
        for p in self.peers:  # one untimed list each
            p.op("list")("")  # type: ignore[misc]
        log(f"list x{runs}")
        self.round_robin("list", [""] * runs)
        for p in self.peers:
            if p.key != "api":
                log(f"{p.title}: deleting {count}")
                p.delete_many([p.name(i) for i in idx])

    def medians(self) -> dict[str, dict[str, float]]:
        return {op: {k: statistics.median(v) for k, v in by.items()}
                for op, by in self.samples.items() if by}


def cli_profile(runs: int) -> dict[str, Any]:
    """What a ``cove`` process costs before it talks to coved."""
    py = str(VENV_PY if VENV_PY.exists() else Path(sys.executable))
    cli = str(REPO / ".venv" / "bin" / "cove")

    def med(argv: list[str]) -> float:
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            quiet(argv)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    out: dict[str, Any] = {
        "python -c pass": med([py, "-c", "pass"]),
        "python -c 'import cove.cli.main'": med([py, "-c", "import cove.cli.main"]),
        "... and build_parser()": med([py, "-c", "import cove.cli.main as m; m.build_parser()"]),
        "cove --version": med([cli, "--version"]) if os.path.exists(cli) else None,
    }
    # -X importtime: "import time: SELF | CUMULATIVE | <indent>NAME"; one space
    # of indent is a top-level import, three a direct child of one.
    p = run([py, "-X", "importtime", "-c", "import cove.cli.main"])
    rows = []
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)", line)
        if m:
            rows.append((len(m.group(3)), m.group(4), int(m.group(2)) / 1000))
    total = next((ms for depth, name, ms in rows if name == "cove.cli.main"), None)
    out["importtime cove.cli.main (ms)"] = total
    # Direct children of cove.cli.main: they precede it in the listing.
    children: list[tuple[str, float]] = []
    for depth, name, ms in reversed(rows[:[r[1] for r in rows].index("cove.cli.main")]
                                    if total is not None else []):
        if depth == 1:
            break
        if depth == 3:
            children.append((name, ms))
    out["importtime_top"] = sorted(children, key=lambda x: -x[1])[:8]
    return out


# -- setup of the host ---------------------------------------------------------------------

def install() -> None:
    missing = [pkg for tool, pkg in (("podman", "podman"), ("lxd", "lxd"))
               if shutil.which(tool) is None]
    if not missing:
        log("podman and lxd already installed")
        return
    log(f"apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env, timeout=600)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env,
        timeout=1200)


def reexec_in_venv() -> None:
    try:
        import cove.client  # noqa: F401
    except ImportError:
        if VENV_PY.exists() and Path(sys.executable).resolve() != VENV_PY.resolve():
            os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])
        raise SystemExit("bench: cove is not importable; run scripts/setup.sh first") from None


# -- report ------------------------------------------------------------------------------

def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f} ms" if x >= 0.0995 else f"{x * 1000:.1f} ms"


def by_base(med: dict[str, dict[str, float]], op: str, key: str) -> float | None:
    """For a ``*_scaled`` row: the same launch with nothing else running."""
    if not op.endswith("_scaled"):
        return None
    return med.get(op[:-len("_scaled")], {}).get(key)


def table(med: dict[str, dict[str, float]], peers: list[Peer], list_count: int,
          scale: int = 0) -> str:
    cols = [p for p in peers]
    head = ["operation"] + [p.title for p in cols]
    lines = []
    for op, label in ROWS:
        by = med.get(op)
        if not by:
            continue
        cove = by.get("cove")
        row = [label.replace("N running", f"{list_count} running")
               .replace("S running", f"{scale} running")]
        for p in cols:
            v = by.get(p.key)
            cell = fmt_ms(v)
            if v is not None and cove is not None and p.key not in ("cove", "api"):
                cell += f" ({cove / v:.2f}x)"
            base = by_base(med, op, p.key)
            if v is not None and base is not None:
                cell += f" ({v / base:.2f}x none running)"
            row.append(cell)
        lines.append(row)
    widths = [max(len(r[i]) for r in [head] + lines) for i in range(len(head))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="cove vs runc, podman and LXD, side by side")
    ap.add_argument("--runs", type=int, default=10, help="runs per operation (default 10)")
    ap.add_argument("--list-runs", type=int, default=5, help="runs of list (default 5)")
    ap.add_argument("--list-count", type=int, default=100, help="containers for list (100)")
    ap.add_argument("--stop-runs", type=int, default=3,
                    help="runs of the graceful stop, ~3 s each (default 3)")
    ap.add_argument("--only", default="cove,api,runc,podman,lxd",
                    help="peers to run, comma separated (default all that are installed)")
    ap.add_argument("--install", action="store_true",
                    help="apt-get install podman and lxd first (LXD is started if needed)")
    ap.add_argument("--no-list", action="store_true", help="skip the 100-container list")
    ap.add_argument("--scale", type=int, default=200,
                    help="cove instances with a NIC and a port running while cove's launches "
                         "are timed again (default 200, 0 to skip)")
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (runc, mounts, cgroups)")
    reexec_in_venv()
    if args.install:
        install()

    # SIGTERM (and SIGHUP) clean up like Ctrl-C does.
    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)

    tag = secrets.token_hex(2)
    cove_root = Path(tempfile.mkdtemp(prefix="covebench-", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="covebench-work-", dir="/tmp"))
    want = set(args.only.split(","))
    peers: list[Peer] = []
    skipped: dict[str, str] = {}
    if "cove" in want or "api" in want:
        cove_cli = CoveCLI(tag, cove_root)
        peers.append(cove_cli)
        if "api" in want:
            peers.append(CoveAPI(tag, cove_root, cove_cli))
    for key, cls, tools in (("runc", Runc, ["runc"]), ("podman", Podman, ["podman", "runc"]),
                            ("lxd", Lxd, ["lxd", "lxc"])):
        if key not in want:
            continue
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            skipped[key] = f"not installed: {', '.join(missing)} (--install)"
            continue
        peers.append(cls(tag, work))

    ports = Ports(tag)
    for p in peers:
        p.ports = ports
    hostnet = HostNet()
    problems: list[str] = []
    started = time.time()
    bench = Bench([])
    try:
        log(f"cove root {cove_root}, work dir {work}, tag {tag}")
        art = Artifacts(work, tag)
        ready: list[Peer] = []
        for p in peers:
            log(f"setting up {p.title}")
            ready.append(p)  # torn down even if its setup fails half-way
            p.setup(art)
        bench = Bench(ready)
        log("warm-up")
        bench.warm_up()
        bench.lifecycle(args.runs, min(args.stop_runs, args.runs))
        if not args.no_list:
            bench.listing(args.list_count, args.list_runs)
        if args.scale:
            bench.scaled(args.scale, args.runs)
        profile = cli_profile(args.runs)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        problems.append("interrupted")
        profile = {}
    except Exception as e:  # noqa: BLE001 - clean up, then say what failed
        log(f"failed: {type(e).__name__}: {e}; cleaning up")
        problems.append("failed")
        profile = {}
    finally:
        for p in reversed(peers):
            try:
                problems += [f"{p.title}: {x}" for x in p.teardown()]
            except Exception as e:  # noqa: BLE001 - keep cleaning the others
                problems.append(f"{p.title}: teardown failed: {e}")
        problems += [f"work: {x}" for x in remove_tree(work)]
        for x in hostnet.restore():
            log(x)
            if x.startswith("left"):
                problems.append(x)
        if cove_root.exists():
            problems += [f"cove root: {x}" for x in remove_tree(cove_root)]

    med = bench.medians()
    notes = [f"cove: {x}" for p in peers if isinstance(p, CoveCLI) for x in p.notes]
    if "interrupted" in problems or "failed" in problems or not med:
        for x in problems:
            log(f"cleanup: {x}")
        return 1
    print()
    print(f"cove bench, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
          f"kernel {platform.release()}; medians of {args.runs} runs "
          f"(graceful stop {min(args.stop_runs, args.runs)}, list {args.list_runs}); "
          f"(x) = cove / peer")
    print(table(med, bench.peers, args.list_count, args.scale))
    print()
    for p in bench.peers:
        cmds = ", ".join(f"{v}" for v in p.commands.values())
        print(f"  {p.title}: {cmds}")
    for key, why in skipped.items():
        print(f"  {key}: skipped, {why}")
    print()
    print("cove CLI process cost (medians):")
    for k, v in profile.items():
        if k.startswith("importtime"):
            continue
        if v is not None:
            print(f"  {k:36s} {fmt_ms(v)}")
    if profile.get("importtime_top"):
        print(f"  import cove.cli.main under -X importtime: "
              f"{profile['importtime cove.cli.main (ms)']:.1f} ms; its heaviest imports: "
              + ", ".join(f"{n} {ms:.1f} ms" for n, ms in profile["importtime_top"]))
    for x in notes:
        print(f"  note: {x}")
    for x in problems:
        print(f"  cleanup: {x}")

    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / time.strftime("%Y%m%d-%H%M%S.json")
    out.write_text(json.dumps({
        "started": started, "seconds": time.time() - started,
        "host": {"cores": os.cpu_count(), "kernel": platform.release(),
                 "python": platform.python_version()},
        "versions": {p.key: _safe(p.version) for p in bench.peers},
        "args": vars(args), "skipped": skipped,
        "commands": {p.key: p.commands for p in bench.peers},
        "medians_s": med, "samples_s": bench.samples, "cli_profile": profile,
        "cleanup_problems": problems, "notes": notes,
    }, indent=1))
    print(f"\nwrote {out.relative_to(REPO)}")
    return 0


def _safe(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        return f"? ({e})"


if __name__ == "__main__":
    sys.exit(main())
