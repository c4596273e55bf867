"""Helpers of the integration suite: a coved process, a tiny REST client over
its unix socket, host-side leak checks and cleanup.

Everything here looks at the host directly (``/proc``, ``/sys/fs/cgroup``,
runc's state dir) rather than asking cove, so a bug in cove's own
bookkeeping cannot hide a leak. Every resource is scoped to one cove root:
other engineers run their own containers on this machine, and nothing here
may touch them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nethost import destroy_network, network_leaks

from cove.host import proc

REPO = Path(__file__).resolve().parents[2]
PREFIX = "covetest"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def point_of(request: Any) -> str:
    """The failpoint a test is parametrised with (its ``point`` argument), ""
    if none: its coved can start armed there (see ``Coved.arm``)."""
    callspec = getattr(request.node, "callspec", None)
    return str(callspec.params.get("point", "")) if callspec is not None else ""


def rand(n: int = 6) -> str:
    return secrets.token_hex(n)[:n]


def new_name(tag: str = "") -> str:
    """``covetest-<tag>-<random>``: a valid instance name no one else uses."""
    return f"{PREFIX}-{tag + '-' if tag else ''}{rand()}"


def mkroot(tag: str = "") -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{tag + '-' if tag else ''}"))


def cgroup_parent(root: Path) -> str:
    root = Path(root).absolute()
    return f"cove-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- the host's view ------------------------------------------------------------------

def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def mounts_under(root: Path) -> list[str]:
    root_s = str(Path(root).absolute())
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = _unescape(line.split()[4])
            if mp == root_s or mp.startswith(root_s + "/"):
                out.append(mp)
    return out


def forwarder_pids(root: Path) -> list[int]:
    """Live forwarders (non-NAT proxy devices) of ``root``, by their tag."""
    from cove.network.model import root_id

    tag = f"--cove-proxy={root_id(root)}:".encode()
    return [pid for pid, stat, argv in proc.processes()
            if stat[stat.rindex(b")") + 2:][:1] != b"Z" and any(a.startswith(tag) for a in argv)]


def conmon_pids(root: Path) -> list[int]:
    """Live container monitors (conmon or cove-monitor) whose command line
    mentions ``root``."""
    needle = (str(Path(root).absolute()) + "/").encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and _is_monitor(os.path.basename(argv[0])) and any(needle in a for a in argv):
            pids.append(int(entry))
    return pids


def monitors_of(root: Path, names: Iterable[str]) -> dict[str, int]:
    """The monitor of each container, by its monitor pid file (``.conmon``):
    a conmon or older cove-monitor of its own, or a cove-monitor it shares
    with up to ``COVE_MONITOR_SHARE`` others."""
    pids = Path(root) / "run" / "pids"
    return {n: int((pids / f"{n}.conmon").read_text()) for n in names}


def _is_monitor(program: bytes) -> bool:
    return program == b"conmon" or program.startswith(b"cove-monitor-")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie is not running; ours is reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    if data[data.rindex(b")") + 2:].split()[0] != b"Z":
        return True
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return False


def coved_pids(root: Path) -> list[int]:
    """coved processes serving ``root`` (matched by their --root argument)."""
    want = str(Path(root).absolute()).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"cove.server.main" in argv and b"--root" in argv:
            i = argv.index(b"--root")
            if i + 1 < len(argv) and argv[i + 1].rstrip(b"/") == want:
                pids.append(int(entry))
    return pids


def cgroup_dirs(root: Path, names: Iterable[str] | None = None) -> list[str]:
    """cgroup directories of ``root``'s parent (or of the named instances) in
    every hierarchy."""
    parent = cgroup_parent(root)
    out = []
    for h in sorted(CGROUP_ROOT.iterdir()):
        if not h.is_dir():
            continue
        if names is None:
            if (h / parent).is_dir():
                out.append(str(h / parent))
        else:
            out += [str(h / parent / n) for n in names if (h / parent / n).is_dir()]
    return out


def runc_ids(root: Path) -> list[str]:
    d = Path(root) / "run" / "runc"
    try:
        return sorted(e.name for e in os.scandir(d) if e.is_dir())
    except OSError:
        return []


def leaks(root: Path, names: Iterable[str] | None = None, *, existing: bool = False) -> list[str]:
    """What ``root`` left on the host: for the named instances, or for the
    whole root when ``names`` is None (then no instance may exist at all).
    ``existing``: the named instances still exist (stopped), so their
    directories are theirs to keep; only runtime leftovers count."""
    root = Path(root).absolute()
    found: list[str] = []
    mounts = mounts_under(root)
    if names is not None:
        names = list(names)
        # an instance's rootfs, and the pinned namespace of its NICs on cni networks
        prefixes = [str(root / sub / n) for n in names for sub in ("instances", "run/cni")]
        mounts = [m for m in mounts if any(m == p or m.startswith(p + "/") for p in prefixes)]
    found += [f"mount {m}" for m in mounts]
    cni_state = root / "run" / "cni"
    if cni_state.is_dir():  # DEL not done (or kept to try again)
        found += [f"cni state {cni_state / n}" for n in sorted(os.listdir(cni_state))
                  if names is None or n in names]
    ids = runc_ids(root)
    if names is not None:
        ids = [i for i in ids if i in names]
    found += [f"runc state {root}/run/runc/{i}" for i in ids]
    found += [f"cgroup {d}" for d in cgroup_dirs(root, names)]
    if names is None:
        found += [f"conmon pid {p}" for p in conmon_pids(root)]
    else:
        for pid in conmon_pids(root):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if any(a.decode(errors="replace") in names for a in argv):
                found.append(f"conmon pid {pid} ({b' '.join(argv[:5]).decode()})")
    inst_dir = root / "instances"
    logs_dir = root / "instances-logs"
    if names is None:
        for d in (inst_dir, logs_dir, root / "storage" / "custom"):
            if d.is_dir():
                found += [f"dir {d}/{e}" for e in sorted(os.listdir(d))]
    elif not existing:
        for n in names:
            for d in (inst_dir / n, logs_dir / n):
                if d.exists():
                    found.append(f"dir {d}")
    if names is None:
        found += network_leaks(root, bridges_ok=True)  # veths; coved keeps its bridges
    return found


def assert_no_leaks(root: Path, names: Iterable[str] | None = None, timeout: float = 5.0,
                    *, existing: bool = False) -> None:
    """Assert nothing is left; exits and unmounts are asynchronous, so allow a
    short settling time before calling something a leak."""
    names = list(names) if names is not None else None
    deadline = time.monotonic() + timeout
    while True:
        left = leaks(root, names, existing=existing)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    assert not left, "leaked:\n  " + "\n  ".join(left)


def reap_conmon_zombies() -> None:
    """An in-process Engine makes this process a child subreaper, so conmon
    monitors of containers can end up as our zombie children: collect those
    (and only those)."""
    proc.reap_zombie_children(b"conmon")
    proc.reap_zombie_children(b"cove-monitor")


def _kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def destroy_root(root: Path) -> list[str]:
    """Remove everything ``root`` ever made on the host, whatever state cove
    is in; return what had to be removed by force (for the report)."""
    root = Path(root).absolute()
    forced: list[str] = []
    _kill_pids(coved_pids(root))
    runc_root = root / "run" / "runc"
    for cid in runc_ids(root):
        forced.append(f"runc container {cid}")
        subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
    pids = conmon_pids(root)
    forced += [f"conmon {p}" for p in pids]
    _kill_pids(pids)
    pids = forwarder_pids(root)
    forced += [f"forwarder {p}" for p in pids]
    _kill_pids(pids)
    # Processes left in the root's cgroups (state dir gone: a simulated reboot).
    parent = cgroup_parent(root)
    for _ in range(50):
        alive = []
        for h in CGROUP_ROOT.iterdir():
            base = h / parent
            if not base.is_dir():
                continue
            for dirpath, _dirs, files in os.walk(base):
                if "cgroup.procs" in files:
                    with contextlib.suppress(OSError):
                        alive += [int(x) for x in Path(dirpath, "cgroup.procs").read_text().split()]
        if not alive:
            break
        forced.append(f"processes {sorted(set(alive))} in {parent}")
        _kill_pids(set(alive))
        time.sleep(0.1)
    for h in CGROUP_ROOT.iterdir():
        base = h / parent
        if not base.is_dir():
            continue
        forced.append(f"cgroup {base}")
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda t: -len(t[0])):
            for _ in range(20):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
    for m in sorted(mounts_under(root), key=len, reverse=True):
        forced.append(f"mount {m}")
        subprocess.run(["umount", "-l", m], capture_output=True, check=False)
    reap_conmon_zombies()
    forced += destroy_network(root)  # bridges, veths, nft table, dnsmasq
    shutil.rmtree(root, ignore_errors=True)
    return forced


# -- HTTP over the unix socket -----------------------------------------------------------

def start_engine(root: Path, busybox_tar: Path) -> Any:
    """An in-process ``cove.engine.Engine`` on ``root``, started, with the
    busybox image as ``busybox``. The caller ends it with ``close_engine``
    (also when this raises: the engine is closed and the root destroyed)."""
    from cove.engine import Engine

    e = Engine(root)
    try:
        e.startup()
        spool = root / "tmp" / "busybox.tar.gz"
        shutil.copyfile(busybox_tar, spool)
        op = e.images.import_file(spool, aliases=["busybox"])
        assert op.wait(60)
        op.raise_for_error()
    except BaseException:
        e.close()
        destroy_root(root)
        raise
    return e


def close_engine(e: Any, root: Path) -> None:
    """Delete what ``e`` (of ``start_engine``) still has, close it, destroy its
    root; raise AssertionError if anything leaked or had to be forced."""
    left: list[str] = []
    try:
        for inst in e.instances.all():
            e.instances.delete(inst.name, force=True).wait(60)
        e.operations.wait_idle(30)
        left = leaks(root)
    finally:
        e.close()
        forced = destroy_root(root)
    assert not left and not forced, (left, forced)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    json: Any = None

    @property
    def metadata(self) -> Any:
        return self.json.get("metadata") if isinstance(self.json, dict) else None

    @property
    def error(self) -> str:
        return self.json.get("error", "") if isinstance(self.json, dict) else ""


class ApiError(AssertionError):
    pass


@dataclass
class Api:
    """A deliberately small LXD REST client (stdlib only), so the tests see
    exactly what coved answers."""

    socket_path: str
    timeout: float = 60.0
    made: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, body: Any = None, *,
                headers: dict[str, str] | None = None, timeout: float | None = None) -> Response:
        conn = _UnixConnection(self.socket_path, timeout or self.timeout)
        try:
            hdrs = dict(headers or {})
            data: bytes | None
            if body is None:
                data = None
            elif isinstance(body, (bytes, bytearray)):
                data = bytes(body)
            else:
                data = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            raw = r.read()
            resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, raw)
        finally:
            conn.close()
        if resp.headers.get("content-type", "").startswith("application/json"):
            with contextlib.suppress(ValueError):
                resp.json = json.loads(raw)
        return resp

    # -- envelopes --------------------------------------------------------------------
    def sync(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        r = self.request(method, path, body, **kw)
        if r.status not in (200, 201) or not isinstance(r.json, dict) or r.json.get("type") != "sync":
            raise ApiError(f"{method} {path}: HTTP {r.status} {r.body[:300]!r}")
        return r.metadata

    def wait(self, op: str | Response, timeout: float = 60) -> dict[str, Any]:
        """Wait for an operation (its path, id or the 202 response); return it."""
        if isinstance(op, Response):
            if op.status != 202:
                raise ApiError(f"expected 202, got HTTP {op.status} {op.body[:300]!r}")
            op = op.json["operation"]
        op_id = op.rsplit("/", 1)[-1]
        r = self.request("GET", f"/1.0/operations/{op_id}/wait?timeout={int(timeout)}",
                         timeout=timeout + 10)
        if r.status != 200:
            raise ApiError(f"wait {op_id}: HTTP {r.status} {r.body[:300]!r}")
        return r.metadata

    def run(self, method: str, path: str, body: Any = None, timeout: float = 60,
            **kw: Any) -> dict[str, Any]:
        """An async call that must succeed: returns the finished operation."""
        r = self.request(method, path, body, **kw)
        op = self.wait(r, timeout)
        if op["status"] != "Success":
            raise ApiError(f"{method} {path}: operation {op['status']}: {op.get('err')}")
        return op

    # -- instances -------------------------------------------------------------------------
    def create(self, name: str, *, image: str = "busybox", config: dict[str, str] | None = None,
               start: bool = False, ephemeral: bool = False) -> dict[str, Any]:
        self.made.append(name)
        return self.run("POST", "/1.0/instances", {
            "name": name, "source": {"type": "image", "alias": image},
            "config": config or {}, "start": start, "ephemeral": ephemeral})

    def launch(self, name: str, cmd: str | None = "sleep 1000", **kw: Any) -> None:
        config = dict(kw.pop("config", None) or {})
        if cmd is not None:
            config["cove.cmd"] = cmd
        self.create(name, config=config, start=True, **kw)

    def instance(self, name: str) -> dict[str, Any]:
        return self.sync("GET", f"/1.0/instances/{name}")

    def state(self, name: str) -> dict[str, Any]:
        return self.sync("GET", f"/1.0/instances/{name}/state")

    def status(self, name: str) -> str:
        return self.instance(name)["status"]

    def names(self) -> list[str]:
        return sorted(p.rsplit("/", 1)[-1] for p in self.sync("GET", "/1.0/instances"))

    def action(self, name: str, action: str, timeout: float = -1, force: bool = False,
               wait: float = 60) -> dict[str, Any]:
        return self.run("PUT", f"/1.0/instances/{name}/state",
                        {"action": action, "timeout": timeout, "force": force}, timeout=wait)

    def remove(self, name: str) -> None:
        """Delete ``name`` however it is (running or not); fine if it is gone."""
        r = self.request("GET", f"/1.0/instances/{name}")
        if r.status == 404:
            return
        # ?wait: queue behind an operation a test left in flight
        if r.metadata and r.metadata.get("status") != "Stopped":
            r = self.request("PUT", f"/1.0/instances/{name}/state?wait=60",
                             {"action": "stop", "force": True, "timeout": 0}, timeout=90)
            if r.status == 202:
                self.wait(r)
        r = self.request("DELETE", f"/1.0/instances/{name}?wait=60", timeout=90)
        if r.status == 202:
            op = self.wait(r)
            if op["status"] != "Success" and self.request("GET", f"/1.0/instances/{name}").status \
                    != 404:
                raise ApiError(f"delete {name}: {op.get('err')}")
        elif r.status != 404:
            raise ApiError(f"delete {name}: HTTP {r.status} {r.body[:300]!r}")

    def exec(self, name: str, command: list[str], *, env: dict[str, str] | None = None,
             user: int | None = None, cwd: str | None = None,
             timeout: float = 60) -> tuple[int, bytes, bytes]:
        """Run a command (no websockets, outputs recorded); (code, stdout, stderr)."""
        body: dict[str, Any] = {"command": command, "wait-for-websocket": False,
                                "record-output": True, "interactive": False,
                                "environment": env or {}}
        if user is not None:
            body["user"] = user
        if cwd is not None:
            body["cwd"] = cwd
        r = self.request("POST", f"/1.0/instances/{name}/exec", body)
        if r.status != 202:
            raise ApiError(f"exec in {name}: HTTP {r.status} {r.body[:300]!r}")
        op = self.wait(r, timeout)
        if op["status"] != "Success":
            raise ApiError(f"exec in {name}: {op['status']}: {op.get('err')}")
        md = op["metadata"]
        outs = []
        for stream in ("1", "2"):
            path = (md.get("output") or {}).get(stream)
            outs.append(self.request("GET", path).body if path else b"")
        return int(md["return"]), outs[0], outs[1]

    def sh(self, name: str, script: str, **kw: Any) -> bytes:
        """Run ``sh -c script``; it must succeed; return its stdout."""
        code, out, err = self.exec(name, ["sh", "-c", script], **kw)
        assert code == 0, f"sh -c {script!r} in {name} exited {code}: {err!r}"
        return out

    def file_get(self, name: str, path: str) -> Response:
        return self.request("GET", f"/1.0/instances/{name}/files?path="
                            + urllib.parse.quote(path, safe=""))

    def file_put(self, name: str, path: str, data: bytes,
                 headers: dict[str, str] | None = None) -> Response:
        hdrs = {"Content-Type": "application/octet-stream", **(headers or {})}
        return self.request("POST", f"/1.0/instances/{name}/files?path="
                            + urllib.parse.quote(path, safe=""), data, headers=hdrs)

    def import_image(self, tarball: Path, alias: str) -> str:
        op = self.run("POST", "/1.0/images", Path(tarball).read_bytes(),
                      headers={"Content-Type": "application/octet-stream"})
        fp = op["metadata"]["fingerprint"]
        self.sync("POST", "/1.0/images/aliases", {"name": alias, "target": fp})
        return fp


# -- a coved process ------------------------------------------------------------------------

class Coved:
    """``python -m cove.server.main --root ROOT`` as a child of the tests."""

    def __init__(self, root: Path, log_dir: Path) -> None:
        self.root = Path(root).absolute()
        self.socket = self.root / "unix.socket"
        self.log = Path(log_dir) / f"coved-{self.root.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.args: list[str] = []  # more coved options, for the next start
        self.env: dict[str, str] = {}  # more environment (COVE_FAILPOINTS), likewise
        self.api = Api(str(self.socket))
        self._running_env: dict[str, str] = {}  # what the running process was started with

    def start(self, timeout: float = 30) -> Coved:
        assert self.proc is None or self.proc.poll() is not None, "coved already running"
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
        env.update(self.env)
        self._running_env = dict(self.env)
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cove.server.main", "--root", str(self.root),
                 "--shutdown-timeout", "10", *self.args],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                start_new_session=True)
        self.wait_ready(timeout)
        return self

    def answers(self) -> bool:
        try:
            return self.api.request("GET", "/1.0", timeout=2).status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"coved exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"coved did not answer in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM and wait (SIGKILL if it hangs); the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"coved ignored SIGTERM for {timeout}s:\n{self.log_tail()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def arm(self, point: str) -> None:
        """Restart with the failpoint ``point`` armed: coved SIGKILLs itself there
        (``cove.engine._failpoints``). A coved started armed at ``point``
        already (``make_coved(..., failpoints=point)``) is left as it is: a
        restart costs seconds, and the steps before the armed one pass no
        other failpoint (a test that passed it early would see coved die)."""
        if self.proc is not None and self.proc.poll() is None \
                and self._running_env == {"COVE_FAILPOINTS": point}:
            return
        self.stop()
        self.env = {"COVE_FAILPOINTS": point}
        self.start()

    def revive(self) -> None:
        """coved died at its failpoint: start it again, unarmed."""
        assert self.proc is not None
        wait_until(lambda: self.proc is not None and self.proc.poll() is not None, 10,
                   what="coved died")
        self.env = {}
        self.start()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def cli_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["COVE_DIR"] = str(self.root)
        env["COVE_NO_AUTOSTART"] = "1"
        env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
        return env


# -- a program on a pty -------------------------------------------------------------------------

class Term:
    """A program on the slave side of a pty we hold the master of."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 24,
                 cols: int = 80) -> None:
        self.master, slave = os.openpty()
        self.resize(rows, cols, fd=slave)
        self.p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                  start_new_session=True,
                                  # the pty must be the controlling terminal for SIGWINCH
                                  preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # noqa: PLW1509
        os.close(slave)
        self.out = b""

    def resize(self, rows: int, cols: int, fd: int | None = None) -> None:
        # The kernel sends SIGWINCH to the terminal's foreground process group.
        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, needle: bytes, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen; got {self.out[-500:]!r}")
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the other side is all closed
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"EOF before {needle!r}; got {self.out[-500:]!r}")
                self.out += chunk
        return self.out

    def drain(self) -> None:
        while True:
            r, _, _ = select.select([self.master], [], [], 0.5)
            if not r:
                return
            try:
                if not os.read(self.master, 65536):
                    return
            except OSError:
                return

    def close(self) -> int:
        try:
            code = self.p.wait(15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)
            raise
        finally:
            self.drain()
            os.close(self.master)
        return code
