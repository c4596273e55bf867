"""``/1.0/metrics`` and ``/1.0/resources`` against real containers and real
clients: the unix socket, a real Prometheus scraping ``core.metrics_address``
over TLS with a ``metrics`` certificate, pylxd and ``lxc info --resources``.

Prometheus is Debian's ``prometheus`` package; the fixture installs it with
apt-get when it is missing (as the conformance suite installs LXD) and skips
with the failing step's output when it cannot. It listens on 127.0.0.1 on a
free port, keeps its data in a covetest temporary directory, and is stopped
(and its directory removed) after the test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pylxd
import pytest
from covetest import Api, mkroot, new_name, wait_until

from cove.api import parse_metrics
from cove.host.certs import generate_certificate

PROMETHEUS = "prometheus"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(api: Api) -> list[tuple[str, dict[str, str], float]]:
    r = api.request("GET", "/1.0/metrics")
    assert r.status == 200, r.body[:300]
    assert r.headers["content-type"] == "text/plain"
    text = r.body.decode()
    assert text.endswith("# EOF\n")
    return parse_metrics(text)


def _of(samples: list[tuple[str, dict[str, str], float]], metric: str,
        name: str) -> list[tuple[dict[str, str], float]]:
    return [(labels, v) for m, labels, v in samples if m == metric and labels.get("name") == name]


def test_metrics_of_running_instances(api: Api) -> None:
    busy, idle, off = new_name("mbusy"), new_name("midle"), new_name("moff")
    # three processes, one of which burns CPU and writes to the console
    api.launch(busy, "sh -c 'sleep 1000 & while :; do :; done & sleep 1000'")
    api.launch(idle, config={"limits.memory": "64MiB"})
    api.create(off)

    def both_seen() -> Any:
        s = _scrape(api)
        # idle: its init alone, once the boot script's processes have ended
        return s if _of(s, "lxd_procs_total", busy) \
            and [v for _, v in _of(s, "lxd_procs_total", idle)] == [1] \
            and _of(s, "lxd_cpu_seconds_total", busy) \
            and sum(v for _, v in _of(s, "lxd_cpu_seconds_total", busy)) > 0.05 else None

    samples = wait_until(both_seen, timeout=30, interval=1,
                         what="both instances in /1.0/metrics, the idle one with its init alone")
    (labels, procs), = _of(samples, "lxd_procs_total", busy)
    assert labels == {"name": busy, "project": "default", "type": "container"}
    assert procs >= 3  # two sleeps and the loop's subshell (and sh, unless it exec'd)
    assert not any(labels.get("name") == off for _, labels, _ in samples), "stopped: no samples"

    modes = {(lb["cpu"], lb["mode"]) for lb, _ in _of(samples, "lxd_cpu_seconds_total", busy)}
    assert {m for _, m in modes} == {"user", "system"}
    (_, total), = _of(samples, "lxd_memory_MemTotal_bytes", idle)
    assert total == 64 * 1024 * 1024  # the limit, as LXD reports it
    for metric in ("lxd_memory_Active_anon_bytes", "lxd_memory_Inactive_bytes",
                   "lxd_memory_MemAvailable_bytes", "lxd_memory_OOM_kills_total",
                   "lxd_filesystem_size_bytes", "lxd_filesystem_avail_bytes"):
        assert _of(samples, metric, idle), metric
    fs = _of(samples, "lxd_filesystem_size_bytes", idle)[0][0]
    assert fs["mountpoint"] == "/" and fs["device"] and fs["fstype"]
    devices = {lb["device"] for lb, _ in _of(samples, "lxd_network_receive_bytes_total", idle)}
    assert {"lo", "eth0"} <= devices
    instances = {lb["type"]: v for m, lb, v in samples if m == "lxd_instances"}
    assert instances["container"] >= 3 and instances["virtual-machine"] == 0
    daemon = {m: v for m, lb, v in samples if not lb}
    assert daemon["lxd_uptime_seconds"] > 0 and daemon["lxd_warnings_total"] == 0
    assert "lxd_operations_total" in daemon

    # traffic inside the container shows on its own lo, as the container counts it
    before = _of(samples, "lxd_network_transmit_bytes_total", idle)
    lo_before = next(v for lb, v in before if lb["device"] == "lo")
    api.sh(idle, "ping -c 3 -W 1 127.0.0.1 >/dev/null 2>&1 || true")

    def lo_grew() -> bool:
        now = _of(_scrape(api), "lxd_network_transmit_bytes_total", idle)
        return next(v for lb, v in now if lb["device"] == "lo") > lo_before
    wait_until(lo_grew, timeout=15, interval=1, what="lo counters to grow")


def test_metrics_unknown_project_has_no_instances(api: Api) -> None:
    samples = parse_metrics(api.request("GET", "/1.0/metrics?project=covetest-none").body.decode())
    assert samples and all("name" not in lb for _, lb, _ in samples)


# -- a real Prometheus over core.metrics_address ------------------------------------------------

@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    found = shutil.which(PROMETHEUS)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("prometheus is not installed, and apt-get cannot install it here")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "install", "-y", "-q", "--no-install-recommends", PROMETHEUS],
                 ["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", PROMETHEUS]):
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1200,
                           stdin=subprocess.DEVNULL, check=False)
        if p.returncode == 0 and shutil.which(PROMETHEUS):
            break
    found = shutil.which(PROMETHEUS)
    if not found:
        tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:])
        pytest.skip(f"apt-get install prometheus failed: exit {p.returncode}: {tail}")
    return found


class Prometheus:
    """One Prometheus scraping ``target`` over HTTPS with a client certificate."""

    def __init__(self, binary: str, target: str, crt: Path, key: Path) -> None:
        self.dir = mkroot("prometheus")
        self.port = _free_port()
        config = self.dir / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{
                "job_name": "cove", "metrics_path": "/1.0/metrics", "scheme": "https",
                "tls_config": {"cert_file": str(crt), "key_file": str(key),
                               "insecure_skip_verify": True},
                "static_configs": [{"targets": [target]}]}]}))
        self.log = open(self.dir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.load(r)
        except OSError:
            return []
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self) -> str:
        return "\n".join((self.dir / "prometheus.log").read_text(errors="replace")
                         .splitlines()[-15:])


@pytest.fixture
def prometheus(prometheus_bin: str) -> Iterator[Any]:
    made: list[Prometheus] = []

    def start(target: str, crt: Path, key: Path) -> Prometheus:
        p = Prometheus(prometheus_bin, target, crt, key)
        made.append(p)
        return p

    yield start
    for p in made:
        p.stop()
        assert p.proc.returncode is not None


def _https_get(port: int, path: str, crt: Path, key: Path) -> tuple[int, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(crt), str(key))
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_prometheus_scrapes_metrics_address(make_coved, busybox_tar: Path,  # type: ignore[no-untyped-def]
                                            prometheus) -> None:
    d = make_coved("metrics")
    d.api.import_image(busybox_tar, "busybox")
    name = new_name("prom")
    d.api.launch(name, "sh -c 'sleep 1000 & sleep 1000'")
    certs = mkroot("metricscerts")
    try:
        crt, key = certs / "metrics.crt", certs / "metrics.key"
        generate_certificate(crt, key, server=False, common_name="covetest-metrics")
        other_crt, other_key = certs / "other.crt", certs / "other.key"
        generate_certificate(other_crt, other_key, server=False, common_name="covetest-other")
        d.api.sync("POST", "/1.0/certificates", {"type": "metrics", "name": "covetest-metrics",
                                                  "certificate": crt.read_text()})
        port = _free_port()
        d.api.sync("PATCH", "/1.0", {"config": {"core.metrics_address": f"127.0.0.1:{port}"}})
        assert d.api.sync("GET", "/1.0")["config"]["core.metrics_address"] == \
            f"127.0.0.1:{port}"

        # who may scrape: the metrics certificate, for /1.0/metrics only
        status, body = _https_get(port, "/1.0/metrics", crt, key)
        assert status == 200 and b"lxd_procs_total" in body
        assert _https_get(port, "/1.0/metrics", other_crt, other_key)[0] == 403
        assert _https_get(port, "/1.0/instances", crt, key)[0] == 403
        status, body = _https_get(port, "/1.0", crt, key)
        assert status == 200 and json.loads(body)["metadata"]["auth"] == "untrusted"

        prom = prometheus(f"127.0.0.1:{port}", crt, key)

        def scraped() -> list[dict[str, Any]]:
            assert prom.proc.poll() is None, prom.log_tail()
            return prom.query(f'lxd_procs_total{{name="{name}"}}')
        try:
            result = wait_until(scraped, timeout=60, interval=1, what="Prometheus to have the series")
        except AssertionError:
            raise AssertionError(f"no series; prometheus says:\n{prom.log_tail()}\n"
                                 f"targets: {prom.query('up')}") from None
        (series,) = result
        assert series["metric"]["project"] == "default"
        assert series["metric"]["type"] == "container"
        assert float(series["value"][1]) >= 2  # two sleeps (and sh, unless it exec'd)
        up = prom.query('up{job="cove"}')
        assert up and up[0]["value"][1] == "1"
        mem = prom.query(f'lxd_memory_MemTotal_bytes{{name="{name}"}}')
        assert mem and float(mem[0]["value"][1]) > 1 << 20

        # off again: nothing listens any more
        d.api.sync("PATCH", "/1.0", {"config": {"core.metrics_address": ""}})
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
    finally:
        shutil.rmtree(certs, ignore_errors=True)


# -- resources ---------------------------------------------------------------------------------

def test_resources_with_pylxd_and_lxc(coved) -> None:  # type: ignore[no-untyped-def]
    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(coved.socket),
                                                                      safe=""))
    res = client.resources
    assert res["cpu"]["total"] == os.cpu_count()
    threads = [t for s in res["cpu"]["sockets"] for c in s["cores"] for t in c["threads"]]
    assert len(threads) == os.cpu_count()
    with open("/proc/meminfo") as f:
        mem_total = int(f.readline().split()[1]) * 1024
    assert 0 < res["memory"]["used"] < res["memory"]["total"]
    assert mem_total <= res["memory"]["total"] < mem_total * 1.2
    assert res["gpu"] == {"cards": [], "total": 0}
    assert res["storage"]["total"] == len(res["storage"]["disks"])

    home = mkroot("lxchome")
    try:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
               "LXD_CONF": str(home), "LANG": "C.UTF-8"}
        lxc = shutil.which("lxc")
        if lxc is None:
            pytest.skip("lxc (Debian package lxd-client) missing")
        subprocess.run([lxc, "remote", "add", "covetest-r", f"unix://{coved.socket}"],
                       env=env, check=True, capture_output=True, timeout=30)
        p = subprocess.run([lxc, "info", "--resources", "covetest-r:"], env=env,
                           capture_output=True, text=True, timeout=30, check=False)
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("CPU (") or p.stdout.startswith("CPUs ("), p.stdout
        assert "\nMemory:\n" in p.stdout and "  Total: " in p.stdout
        assert p.stdout.count("(id: ") == os.cpu_count()
    finally:
        shutil.rmtree(home, ignore_errors=True)
