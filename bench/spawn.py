"""JupyterHub spawns side by side: CoveSpawner on coved, DockerSpawner on
podman's Docker-compatible API (``podman system service``).

    sudo .venv/bin/python bench/spawn.py [--users 1,10,50] [--only cove,docker]

One real JupyterHub (PyPI) with its real configurable-http-proxy (npm) per
(spawner, N), on 127.0.0.1 random ports (``tests/integration/jhub.py``),
the dummy authenticator, N users made through the hub's API. Then all N
servers are asked for at once (one thread per user: ``POST
/hub/api/users/NAME/server``) and each thread times **spawn to reachable**:
from its request until ``GET /user/NAME/`` through the proxy answers 200
from the server in the container. After all are up: **memory**, the drop
of the host's MemAvailable against before the spawns (per user), and the
RSS of the daemon (coved / podman service), and the memory each back end
owns per user: its containers' cgroups (memory.usage_in_bytes) plus their
conmon (and for cove the proxy forwarder) processes, by PSS (each shared
page counted once over the processes sharing it; their RSS, which counts
the interpreter's and libc's shared pages in every process, is kept
beside it), each kind per user on its own; the host figure
is kept in the samples but is noise when anything else runs. Then all are stopped (``DELETE
.../server``) and the stop-to-gone time is taken. A failure is a spawn
request not accepted, a server that never answered within ``--timeout``,
or one the hub lost.

Same image on both: the busybox rootfs of ``scripts/mkbusybox.py`` (a
unified tarball imported into coved, the plain tarball ``podman import``ed),
the same command (busybox ``httpd`` serving ``/user/NAME/``), both
published on 127.0.0.1. cove's containers get their NIC from the default
profile and the spawner's proxy device back to the hub; podman's, its
default network (CNI here, with portmap). podman runs on private storage
(``--root``/``--runroot`` under the work dir) with ``runc``; what its CNI
leaves on the host is removed as in ``bench/run.py`` (``HostNet``).

Nothing is asserted; the table is printed and the samples written to
``bench/results/spawn-<time>.json``. Needs root, coved's dependencies,
podman, and ``pip install -e '.[test,bench]'`` (dockerspawner).
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
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests" / "integration"), str(REPO / "src")]

from covetest import Coved, cgroup_parent, conmon_pids, destroy_root, forwarder_pids, mkroot
from jhub import Hub, ensure_chp

APP = r"""
d=/www/user/$JUPYTERHUB_USER; mkdir -p $d; echo "hello $JUPYTERHUB_USER" > $d/index.html
exec httpd -f -p 8888 -h /www
"""


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


benchrun = _load("covebench_run", REPO / "bench" / "run.py")


def log(msg: str) -> None:
    print(f"[spawn] {msg}", file=sys.stderr, flush=True)


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pss(pid: int) -> int:
    """The process's proportional set size (``smaps_rollup``), bytes."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def helpers(kinds: dict[str, list[int]]) -> dict[str, int]:
    """PSS of each kind of helper process, and the RSS and PSS of all."""
    out = {f"{kind}_pss": sum(pss(p) for p in pids) for kind, pids in kinds.items()}
    every = [p for pids in kinds.values() for p in pids]
    out["helpers_rss"] = sum(rss(p) for p in every)
    out["helpers_pss"] = sum(pss(p) for p in every)
    return out


def cgroup_mem(rel: str) -> int:
    """Memory charged to cgroup ``rel`` (v1 memory controller or v2)."""
    for path in (Path("/sys/fs/cgroup/memory") / rel / "memory.usage_in_bytes",
                 Path("/sys/fs/cgroup") / rel / "memory.current"):
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            continue
    return 0


def pids_with(needle: bytes, name: bytes) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and os.path.basename(argv[0]) == name and any(needle in a for a in argv):
                out.append(int(entry))
    return out


# -- the two back ends ------------------------------------------------------------------

class CoveSide:
    name = "cove"
    publish = "proxy"  # the server's port: a forwarder process per user

    def __init__(self, work: Path, art: Any) -> None:
        self.coved = Coved(mkroot("bench-coved"), work)
        self.coved.start()
        self.coved.api.import_image(art.unified, "busybox")

    def pid(self) -> int:
        return self.coved.proc.pid if self.coved.proc else 0

    def owned_memory(self, realm: str) -> dict[str, int]:
        """The containers' cgroups (all of this coved's), and the memory of
        their conmon and proxy-forwarder processes (``helpers``)."""
        root = self.coved.root
        return {"cgroups": cgroup_mem(cgroup_parent(root)),
                **helpers({"conmon": conmon_pids(root), "forwarder": forwarder_pids(root)})}

    def config(self, realm: str) -> str:
        return (f"c.JupyterHub.spawner_class = 'cove'\n"
                f"c.CoveSpawner.endpoint = {str(self.coved.socket)!r}\n"
                f"c.CoveSpawner.realm = {realm!r}\n"
                f"c.CoveSpawner.image = 'busybox'\n"
                f"c.CoveSpawner.publish = {self.publish!r}\n"
                f"c.CoveSpawner.cmd = ['/bin/sh', '-c', {APP!r}]\n")

    def after_hub(self, realm: str) -> list[str]:
        api = self.coved.api
        left = []
        resp = api.request("GET", f"/1.0/instances?project={realm}")
        if resp.status == 200:
            for url in resp.metadata:
                left.append(url)
                name = url.rsplit("/", 1)[-1].split("?")[0]
                api.run("PUT", f"/1.0/instances/{name}/state?project={realm}",
                        {"action": "stop", "force": True})
                api.run("DELETE", f"/1.0/instances/{name}?project={realm}")
        api.request("DELETE", f"/1.0/projects/{realm}")
        return left

    def close(self) -> list[str]:
        try:
            self.coved.stop()
        except AssertionError as e:
            log(str(e))
        return destroy_root(self.coved.root)


class CoveNatSide(CoveSide):
    """CoveSpawner with ``publish = "nat"``: the server's port by NAT rules,
    no forwarder process (the one left per user is the way back to the hub)."""

    name = "cove-nat"
    publish = "nat"


class DockerSide:
    name = "docker"

    def __init__(self, work: Path, art: Any) -> None:
        self.work = work / "podman"
        self.work.mkdir(parents=True)
        self.hostnet = benchrun.HostNet()
        self.base = [shutil.which("podman") or "podman",
                     "--root", str(self.work / "root"), "--runroot", str(self.work / "run"),
                     "--tmpdir", str(self.work / "tmp"), "--storage-driver", "overlay",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        self.image = "localhost/covebench-spawn:latest"
        benchrun.run([*self.base, "import", str(art.plain), self.image])
        self.sock = self.work / "podman.sock"
        self.log = open(self.work / "service.log", "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([*self.base, "system", "service", "--time", "0",
                                      f"unix://{self.sock}"], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.sock.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("podman system service did not come up")
            time.sleep(0.1)

    def pid(self) -> int:
        return self.proc.pid

    def owned_memory(self, realm: str) -> dict[str, int]:
        """The containers' cgroups, and the memory of their conmon processes."""
        p = benchrun.run([*self.base, "ps", "-q", "--no-trunc", "--filter", f"name={realm}"],
                         check=False)
        groups, conmons = 0, []
        for cid in p.stdout.split():
            groups += cgroup_mem(f"libpod_parent/libpod-{cid}")
            conmons += pids_with(cid.encode(), b"conmon")
        return {"cgroups": groups, **helpers({"conmon": conmons})}

    def config(self, realm: str) -> str:
        return ("c.JupyterHub.spawner_class = 'docker'\n"
                f"c.DockerSpawner.client_kwargs = {{'base_url': 'unix://{self.sock}'}}\n"
                f"c.DockerSpawner.image = {self.image!r}\n"
                "c.DockerSpawner.pull_policy = 'never'\n"
                f"c.DockerSpawner.cmd = ['/bin/sh', '-c', {APP!r}]\n"
                "c.DockerSpawner.remove = True\n"
                "c.DockerSpawner.use_internal_ip = False\n"
                "c.DockerSpawner.host_ip = '127.0.0.1'\n"
                # as bench/run.py's podman: runc here may not raise these limits
                "c.DockerSpawner.extra_host_config = {'ulimits': ["
                "{'name': 'nofile', 'soft': 1024, 'hard': 1024}, "
                "{'name': 'nproc', 'soft': 1000, 'hard': 1000}]}\n"
                f"c.DockerSpawner.prefix = {realm!r}\n")

    def after_hub(self, realm: str) -> list[str]:
        p = benchrun.run([*self.base, "ps", "-aq", "--filter", f"name={realm}"], check=False)
        left = p.stdout.split()
        if left:
            benchrun.run([*self.base, "rm", "-f", "-t", "0", *left], check=False)
        return left

    def close(self) -> list[str]:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
        benchrun.run([*self.base, "rm", "-af", "-t", "0"], check=False)
        benchrun.run([*self.base, "rmi", "-af"], check=False)
        return self.hostnet.restore() + benchrun.remove_tree(self.work)


# -- one round ----------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kw: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _reachable(hub: Hub, user: str, deadline: float) -> bool:
    """Until the proxy serves the app at /user/NAME/. Redirects are not
    followed: before its route exists the hub answers (302 to its own
    pending page), and following that from N threads at once would load
    the hub's one event loop more than the spawns themselves."""
    while time.monotonic() < deadline:
        try:
            with _OPENER.open(f"{hub.url}/user/{user}/", timeout=10) as r:
                if r.status == 200 and b"hello" in r.read():
                    return True
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.25)
    return False


def _wait_all_stopped(hub: Hub, users: list[str], t0: float,
                      deadline: float) -> dict[str, float]:
    """Seconds from ``t0`` until each of ``users`` has no active server,
    from ``GET /users?state=active`` (paged) once a second, until all
    are gone or ``deadline``."""
    left, done = set(users), {}
    while left and time.monotonic() < deadline:
        active: set[str] = set()
        offset = 0
        while True:
            code, page = hub.api("GET", f"/users?state=active&offset={offset}&limit=200")
            if code != 200 or not isinstance(page, list):
                active = left  # the hub did not answer: nobody counts as gone
                break
            active |= {u["name"] for u in page}
            if len(page) < 200:
                break
            offset += 200
        now = time.monotonic()
        for u in left - active:
            done[u] = now - t0
        left &= active
        if left:
            time.sleep(1.0)  # each answer took the hub's thread ~0.1 s at 100 users (py-spy)
    return done


def one_round(side: Any, chp: Path, n: int, timeout: float,
              hub_timeouts: tuple[int, int] = (600, 600)) -> dict[str, Any]:
    realm = f"covebench-{side.name}{n}-{os.getpid()}"
    start_timeout, http_timeout = hub_timeouts
    hub = Hub(chp, side.config(realm) + "c.JupyterHub.concurrent_spawn_limit = 0\n"
              f"c.Spawner.start_timeout = {start_timeout}\n"
              f"c.Spawner.http_timeout = {http_timeout}\n", tag="bench-hub")
    users = [f"u{i:04d}" for i in range(n)]
    # the machine's load as the round begins: the numbers mean little without it
    out: dict[str, Any] = {"spawner": side.name, "users": n, "loadavg": os.getloadavg(),
                           "hub_timeouts_s": [start_timeout, http_timeout]}
    try:
        hub.start()
        code, _ = hub.api("POST", "/users", {"usernames": users})
        assert code == 201, code
        mem0 = mem_available()
        times: dict[str, float] = {}
        failures: list[str] = []
        lock = threading.Lock()

        def spawn(user: str) -> None:
            t0 = time.monotonic()
            code, body = hub.api("POST", f"/users/{user}/server", timeout=timeout)
            if code not in (201, 202):
                with lock:
                    failures.append(f"{user}: spawn request {code} {body}")
                return
            if _reachable(hub, user, t0 + timeout):
                with lock:
                    times[user] = time.monotonic() - t0
            else:
                with lock:
                    failures.append(f"{user}: not reachable in {timeout}s")

        t_all = time.monotonic()
        threads = [threading.Thread(target=spawn, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out["all_up_s"] = time.monotonic() - t_all
        time.sleep(1)
        out["host_mem_drop_per_user_mib"] = (mem0 - mem_available()) / n / 2**20
        owned = side.owned_memory(realm)
        out["mem_per_user_mib"] = (owned["cgroups"] + owned["helpers_pss"]) / n / 2**20
        out["container_mem_per_user_mib"] = owned["cgroups"] / n / 2**20
        out["helper_pss_per_user_mib"] = owned["helpers_pss"] / n / 2**20
        out["helper_rss_per_user_mib"] = owned["helpers_rss"] / n / 2**20
        for kind in ("conmon", "forwarder"):
            if f"{kind}_pss" in owned:
                out[f"{kind}_pss_per_user_mib"] = owned[f"{kind}_pss"] / n / 2**20
        out["daemon_rss_mib"] = rss(side.pid()) / 2**20
        # the hub still sees every server ready (none lost after the spawn)
        lost = [u for u in times
                if not (hub.api("GET", f"/users/{u}")[1] or {}).get("servers", {}).get("", {})
                .get("ready")]
        failures += [f"{u}: the hub lost it" for u in lost]
        out["spawn_s"] = sorted(times.values())
        out["failures"] = failures

        log(f"{side.name}: stopping {n} at once")
        t_stop = time.monotonic()
        stop_failures: list[str] = []

        asked: set[str] = set()

        def stop(user: str) -> None:
            try:
                code, body = hub.api("DELETE", f"/users/{user}/server", timeout=timeout)
                if code not in (202, 204):
                    raise AssertionError(f"stop request {code} {body}")
                with lock:
                    asked.add(user)
            except (OSError, AssertionError) as e:
                with lock:
                    stop_failures.append(f"{user}: {str(e).splitlines()[0][:200]}")

        stoppers = [threading.Thread(target=stop, args=(u,)) for u in users]
        for t in stoppers:
            t.start()
        # One watcher asks the hub which servers are still active, for all
        # users at once: a poller per user (GET /users/NAME every 0.3 s)
        # kept the hub's one thread busy checking the admin token (16384
        # rounds of sha512 for a configured token, ~5 ms a request), which
        # at 100 users starved the hub's own stops (bench/README.md).
        stopped_s = _wait_all_stopped(hub, users, t_stop, t_stop + timeout)
        for t in stoppers:
            t.join()
        out["all_stopped_s"] = time.monotonic() - t_stop
        out["stop_s"] = sorted(stopped_s.values())
        stop_failures += [f"{u}: its server did not stop in {timeout}s"
                          for u in users if u in asked and u not in stopped_s]
        out["stop_failures"] = stop_failures
    finally:
        if out.get("failures") or "spawn_s" not in out:
            out["hub_log"] = hub.tail(60)
        hub.close()
        left = side.after_hub(realm)
        if left:
            out["left_behind"] = left
    return out


def summary(r: dict[str, Any]) -> str:
    s = r.get("spawn_s") or []
    med = statistics.median(s) if s else float("nan")
    p95 = s[min(len(s) - 1, int(len(s) * 0.95))] if s else float("nan")
    load = r.get("loadavg") or (float("nan"),)
    return (f"{r['spawner']:6} N={r['users']:<4} load {load[0]:4.1f}  median {med:6.2f}s  p95 {p95:6.2f}s  "
            f"all up {r.get('all_up_s', float('nan')):6.2f}s  "
            f"stop all {r.get('all_stopped_s', float('nan')):6.2f}s "
            f"(median {statistics.median(r['stop_s']) if r.get('stop_s') else float('nan'):5.2f}s)  "
            f"mem/user {r.get('mem_per_user_mib', float('nan')):6.1f} MiB "
            f"(containers {r.get('container_mem_per_user_mib', float('nan')):5.1f} + helpers "
            f"{r.get('helper_pss_per_user_mib', float('nan')):5.1f} PSS: forwarders "
            f"{r.get('forwarder_pss_per_user_mib', 0.0):4.1f}, conmon "
            f"{r.get('conmon_pss_per_user_mib', float('nan')):4.1f}; helpers' RSS "
            f"{r.get('helper_rss_per_user_mib', float('nan')):5.1f})  "
            f"daemon RSS {r.get('daemon_rss_mib', float('nan')):6.1f} MiB  "
            f"failures {len(r.get('failures', []))} (stop: {len(r.get('stop_failures', []))})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", default="1,10,50", help="comma-separated counts")
    ap.add_argument("--only", default="cove,cove-nat,docker")
    ap.add_argument("--timeout", type=float, default=300)
    # "60,30" is JupyterHub's own Spawner.start_timeout / http_timeout: a spawn
    # the hub gives up on then counts as a failure, as a stock hub would see it
    ap.add_argument("--hub-timeouts", default="600,600",
                    help="the hub's Spawner.start_timeout,http_timeout in seconds")
    args = ap.parse_args(argv)
    start_t, http_t = (int(x) for x in args.hub_timeouts.split(","))
    if os.geteuid() != 0:
        print("bench/spawn.py needs root", file=sys.stderr)
        return 2
    counts = [int(x) for x in args.users.split(",")]
    chp = ensure_chp()
    work = mkroot("bench-spawn")
    art = benchrun.Artifacts(work, "spawn")
    sides: list[Any] = []
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        for key, cls in (("cove", CoveSide), ("cove-nat", CoveNatSide),
                         ("docker", DockerSide)):
            if key in args.only.split(","):
                log(f"setting up {key}")
                sides.append(cls(work, art))
        for n in counts:
            for side in sides:  # alternate, so load from elsewhere hits both alike
                log(f"{side.name}: {n} users at once")
                r = one_round(side, chp, n, args.timeout, (start_t, http_t))
                results.append(r)
                print(summary(r), flush=True)
                for f in r.get("failures", [])[:5]:
                    print(f"    {f}")
                if r.get("failures"):
                    print("    hub log: " + "\n    ".join(r["hub_log"].splitlines()[-25:]))
    finally:
        for side in sides:
            problems += side.close()
        problems += benchrun.remove_tree(work)
    for n in counts:
        by = {r["spawner"]: r for r in results if r["users"] == n}
        if "cove" in by and "docker" in by and by["cove"]["spawn_s"] and by["docker"]["spawn_s"]:
            ratio = statistics.median(by["cove"]["spawn_s"]) / statistics.median(
                by["docker"]["spawn_s"])
            print(f"N={n}: cove / docker median spawn-to-reachable = {ratio:.2f}")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"spawn-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"results": results, "cleanup": problems}, indent=1))
    print(f"samples: {path}")
    for p in problems:
        print(f"cleanup: {p}")
    return 1 if any(r.get("failures") for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
