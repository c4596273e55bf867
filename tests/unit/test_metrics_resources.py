"""Metrics and resources, pure parts: LXD's exposition format (names, order,
TYPE lines, Go's number format), the cgroup and /proc parsers, the samples
of one container, the resources reader on a fake /proc and /sys, the
``core.metrics_address`` syntax, and who may scrape over HTTPS (the real
app on the fake engine, with the engine's real ``Trust``)."""

from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_server_fakes import FakeEngine, run_app
from test_trust import Served, _https, client_cert, served  # noqa: F401 - fixtures

from cove.api import MetricSet, format_value, parse_metrics
from cove.client import Client
from cove.engine._metrics import instance_samples
from cove.engine._resources import host_resources
from cove.host.certs import generate_certificate
from cove.model import trust
from cove.model.errors import BadRequest
from cove.runtime.cgroup_metrics import (
    ContainerMetrics,
    IOStats,
    NetStats,
    _cpuset_count,
    parse_blkio,
    parse_cpu_stat,
    parse_io_stat,
    parse_memory_stat,
    parse_net_dev,
    parse_usage_all,
    partitions,
)

# -- the exposition format -----------------------------------------------------------------------

@pytest.mark.parametrize(("value", "go"), [
    # what Go's strconv.FormatFloat(v, 'g', -1, 64) prints
    (0, "0"), (1, "1"), (123456, "123456"), (1234567, "1.234567e+06"), (1e6, "1e+06"),
    (0.0001, "0.0001"), (0.00001, "1e-05"), (1.5, "1.5"), (12345.678, "12345.678"),
    (3405430784, "3.405430784e+09"), (0.1, "0.1"), (-2.5, "-2.5"), (4096, "4096"),
    (67108864, "6.7108864e+07"), (1e21, "1e+21")])
def test_numbers_are_written_as_go_writes_them(value: float, go: str) -> None:
    assert format_value(value) == go
    assert float(go) == value


def test_families_in_lxd_order_with_help_type_and_sorted_labels() -> None:
    m = MetricSet()
    m.add("procs", 3, {"type": "container", "name": "c1", "project": "default"})
    m.add("uptime", 12.5)
    m.add("cpu_seconds", 0.25, {"mode": "user", "cpu": "0", "name": "c1"})
    m.add("active_anon", 1531904, {"name": "c1"})
    m.add("instances", 2, {"project": "default", "type": "container"})
    assert m.render() == (
        "# HELP lxd_cpu_seconds_total The total number of CPU time used in seconds.\n"
        "# TYPE lxd_cpu_seconds_total counter\n"
        'lxd_cpu_seconds_total{cpu="0",mode="user",name="c1"} 0.25\n'
        "# HELP lxd_instances The number of instances.\n"
        "# TYPE lxd_instances gauge\n"
        'lxd_instances{project="default",type="container"} 2\n'
        "# HELP lxd_memory_Active_anon_bytes The amount of anonymous memory on active LRU "
        "list.\n"
        "# TYPE lxd_memory_Active_anon_bytes gauge\n"
        'lxd_memory_Active_anon_bytes{name="c1"} 1.531904e+06\n'
        "# HELP lxd_procs_total The number of running processes.\n"
        "# TYPE lxd_procs_total gauge\n"
        'lxd_procs_total{name="c1",project="default",type="container"} 3\n'
        "# HELP lxd_uptime_seconds The daemon uptime in seconds.\n"
        "# TYPE lxd_uptime_seconds counter\n"
        "lxd_uptime_seconds 12.5\n"
        "# EOF\n")
    with pytest.raises(KeyError):
        m.add("procs_typo", 1)


def test_parse_metrics_reads_back_what_is_rendered() -> None:
    m = MetricSet()
    m.add("net_rx_bytes", 10, {"device": 'we"ird\\', "name": "c1"})
    m.add("warnings", 0)
    assert parse_metrics(m.render()) == [
        ("lxd_network_receive_bytes_total", {"device": 'we"ird\\', "name": "c1"}, 10.0),
        ("lxd_warnings_total", {}, 0.0)]
    with pytest.raises(ValueError, match="not a metrics sample"):
        parse_metrics("lxd_x{ 1\n")


# -- cgroup and /proc parsers ---------------------------------------------------------------------

V1_MEMORY_STAT = """cache 100
rss 200
active_anon 1
inactive_anon 2
active_file 3
inactive_file 4
mapped_file 5
total_cache 1000
total_rss 2000
total_shmem 30
total_mapped_file 50
total_dirty 6
total_writeback 7
total_active_anon 10
total_inactive_anon 20
total_active_file 30
total_inactive_file 40
total_unevictable 8
"""

V2_MEMORY_STAT = """anon 5000
file 1000
shmem 30
file_mapped 50
file_dirty 6
file_writeback 7
active_anon 10
inactive_anon 20
active_file 30
inactive_file 40
unevictable 8
slab_reclaimable 90
"""


def test_memory_stat_v1_takes_the_hierarchical_totals() -> None:
    assert parse_memory_stat(V1_MEMORY_STAT) == {
        "cache": 1000, "rss": 2000, "shmem": 30, "mapped": 50, "dirty": 6, "writeback": 7,
        "active_anon": 10, "inactive_anon": 20, "active_file": 30, "inactive_file": 40,
        "unevictable": 8, "active": 40, "inactive": 60}


def test_memory_stat_v2_names() -> None:
    got = parse_memory_stat(V2_MEMORY_STAT)
    assert "rss" not in got  # v2 has none; LXD reports none
    assert got["cache"] == 1000 and got["slab_reclaimable"] == 90 and got["active"] == 40


def test_cpu_parsers() -> None:
    assert parse_usage_all("cpu user system\n0 100 200\n1 300 400\n") == \
        {0: (100, 200), 1: (300, 400)}
    assert parse_cpu_stat("usage_usec 9\nuser_usec 5\nsystem_usec 4\nnr_periods 0\n") == \
        {0: (5000, 4000)}
    assert _cpuset_count("0-3,6,8-9\n") == 7
    assert _cpuset_count("") == 0


def test_block_io_by_device_name_without_loop_devices() -> None:
    parts = partitions("major minor  #blocks  name\n\n 254        0  268435456 vda\n"
                       "   7        0      1000 loop0\n")
    assert parts == {"254:0": "vda", "7:0": "loop0"}
    v1 = parse_blkio("254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 1\n7:0 Read 5\n"
                     "254:0 Total 12288\nTotal 12293\n",
                     "254:0 Read 1\n254:0 Write 2\n7:0 Read 9\n", parts)
    assert v1 == {"vda": IOStats(read_bytes=4096, reads=1, written_bytes=8192, writes=2)}
    v2 = parse_io_stat("254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
                       "7:0 rbytes=5 wbytes=0 rios=1 wios=0\n", parts)
    assert v2 == v1


def test_net_dev_is_the_namespace_view() -> None:
    text = ("Inter-|   Receive                                                |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets"
            " errs drop fifo colls carrier compressed\n"
            "    lo:     100       2    0    0    0     0          0         0      100       2"
            "    0    0    0     0       0          0\n"
            "  eth0:    5000      40    1    3    0     0          0         0      700       9"
            "    2    4    0     0       0          0\n")
    got = parse_net_dev(text)
    assert got["lo"] == NetStats(100, 2, 0, 0, 100, 2, 0, 0)
    assert got["eth0"] == NetStats(rx_bytes=5000, rx_packets=40, rx_errs=1, rx_drop=3,
                                   tx_bytes=700, tx_packets=9, tx_errs=2, tx_drop=4)


def _samples(m: ContainerMetrics, host_memory: int = 1 << 30) -> dict[tuple[str, str], float]:
    out = MetricSet()
    instance_samples(out, {"name": "c1", "project": "default", "type": "container"}, m,
                     host_memory=host_memory, fs=("/dev/vda", "ext4", 100, 40, 50))
    got = {}
    for name, labels, value in parse_metrics(out.render()):
        assert {"name", "project", "type"} <= set(labels)
        extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items())
                         if k not in ("name", "project", "type"))
        got[(name, extra)] = value
    return got


def test_one_container_as_lxd_reports_it() -> None:
    m = ContainerMetrics(memory=parse_memory_stat(V1_MEMORY_STAT), memory_usage=4000,
                         memory_limit=64 << 20, swap_usage=0, oom_kills=2,
                         cpu={0: (2_000_000_000, 500_000_000)}, effective_cpus=2,
                         disk={"vda": IOStats(1, 2, 3, 4)}, processes=5,
                         network={"eth0": NetStats(1, 2, 3, 4, 5, 6, 7, 8)})
    s = _samples(m)
    assert s[("lxd_memory_MemTotal_bytes", "")] == 64 << 20
    assert s[("lxd_memory_MemFree_bytes", "")] == (64 << 20) - 4000
    assert s[("lxd_memory_MemAvailable_bytes", "")] == (64 << 20) - 4000 + 1000
    assert s[("lxd_memory_OOM_kills_total", "")] == 2
    assert s[("lxd_memory_RSS_bytes", "")] == 2000
    assert s[("lxd_cpu_seconds_total", "cpu=0,mode=user")] == 2.0
    assert s[("lxd_cpu_seconds_total", "cpu=0,mode=system")] == 0.5
    assert s[("lxd_cpu_effective_total", "")] == 2
    assert s[("lxd_disk_written_bytes_total", "device=vda")] == 3
    assert s[("lxd_filesystem_avail_bytes", "device=/dev/vda,fstype=ext4,mountpoint=/")] == 40
    assert s[("lxd_network_transmit_drop_total", "device=eth0")] == 8
    assert s[("lxd_network_receive_errs_total", "device=eth0")] == 3
    assert s[("lxd_procs_total", "")] == 5
    # no limit: the host's memory is the total, as LXD's effective limit
    m.memory_limit = None
    assert _samples(m, host_memory=1 << 33)[("lxd_memory_MemTotal_bytes", "")] == 1 << 33
    # a limit above the host's memory is the host's memory
    m.memory_limit = 1 << 40
    assert _samples(m, host_memory=1 << 33)[("lxd_memory_MemTotal_bytes", "")] == 1 << 33
    # swap not accounted: no Swap sample (LXD leaves it out too)
    m.swap_usage = None
    assert ("lxd_memory_Swap_bytes", "") not in _samples(m)


# -- resources on a fake host -----------------------------------------------------------------------

def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_resources_from_a_fake_proc_and_sys(tmp_path: Path) -> None:
    r = tmp_path
    cpuinfo = ""
    for cpu in range(4):  # 2 sockets x 1 core x 2 threads
        cpuinfo += (f"processor\t: {cpu}\nvendor_id\t: GenuineTest\n"
                    f"model name\t: Test CPU {cpu // 2}\nflags\t\t: fpu hypervisor\n\n")
        base = f"sys/devices/system/cpu/cpu{cpu}"
        _write(r, f"{base}/topology/physical_package_id", str(cpu // 2))
        _write(r, f"{base}/topology/core_id", "0")
        _write(r, f"{base}/topology/die_id", "0")
        _write(r, f"{base}/online", "0" if cpu == 3 else "1")
        _write(r, f"{base}/cpufreq/scaling_cur_freq", "2000000")
        (r / base / f"node{cpu // 2}").mkdir()
        _write(r, f"{base}/cache/index0/level", "1")
        _write(r, f"{base}/cache/index0/type", "Data")
        _write(r, f"{base}/cache/index0/size", "32K")
    _write(r, "proc/cpuinfo", cpuinfo)
    _write(r, "proc/meminfo", "MemTotal:       8000 kB\nMemFree:        1000 kB\n"
                              "Buffers:         500 kB\nCached:         2500 kB\n"
                              "HugePages_Total:       0\nHugePages_Free:        0\n"
                              "Hugepagesize:       2048 kB\n")
    _write(r, "sys/devices/system/node/node0/meminfo",
           "Node 0 MemTotal:       4000 kB\nNode 0 MemUsed:       1000 kB\n")
    pci = r / "sys/devices/pci0000:00/0000:00:03.0"
    _write(r, "sys/devices/pci0000:00/0000:00:03.0/vendor", "0x1af4\n")
    _write(r, "sys/devices/pci0000:00/0000:00:03.0/device", "0x0001\n")
    _write(r, "sys/devices/pci0000:00/0000:00:03.0/numa_node", "-1\n")
    (r / "sys/bus/pci/drivers/e1000").mkdir(parents=True)
    os.symlink(r / "sys/bus/pci/drivers/e1000", pci / "driver")
    for iface, dev in (("eth0", pci), ("br0", None)):
        _write(r, f"sys/class/net/{iface}/address", "02:00:00:00:00:01\n")
        _write(r, f"sys/class/net/{iface}/type", "1\n")
        _write(r, f"sys/class/net/{iface}/carrier", "1\n")
        if dev is not None:
            os.symlink(dev, r / f"sys/class/net/{iface}/device")
    disk = r / "sys/devices/pci0000:00/0000:00:02.0/virtio2"
    disk.mkdir(parents=True)
    (r / "sys/bus/virtio").mkdir(parents=True)
    os.symlink(r / "sys/bus/virtio", disk / "subsystem")
    for name, extra in (("vda", {"size": "2048", "dev": "254:0", "ro": "0"}),
                        ("loop0", {"size": "8", "dev": "7:0"})):
        for k, v in extra.items():
            _write(r, f"sys/class/block/{name}/{k}", v)
    os.symlink(disk, r / "sys/class/block/vda/device")
    _write(r, "sys/class/block/vda/vda1/partition", "1")
    _write(r, "sys/class/block/vda/vda1/size", "1024")
    _write(r, "sys/class/block/vda/vda1/dev", "254:1")

    res = host_resources(r)
    cpu = res["cpu"]
    assert cpu["total"] == 4 and [s["socket"] for s in cpu["sockets"]] == [0, 1]
    s0 = cpu["sockets"][0]
    assert s0["vendor"] == "GenuineTest" and s0["name"] == "Test CPU 0"
    assert s0["cache"] == [{"level": 1, "type": "Data", "size": 32768}]
    assert s0["frequency"] == 2000
    (core,) = s0["cores"]
    assert [(t["id"], t["thread"], t["numa_node"]) for t in core["threads"]] == \
        [(0, 0, 0), (1, 1, 0)]
    assert cpu["sockets"][1]["cores"][0]["threads"][1]["online"] is False
    mem = res["memory"]
    assert mem["total"] == 8000 * 1024 and mem["used"] == 4000 * 1024
    _write(r, "sys/devices/system/memory/block_size_bytes", "8000000\n")
    for i in range(3):
        _write(r, f"sys/devices/system/memory/memory{i}/online", "1" if i < 2 else "0")
    assert host_resources(r)["memory"]["total"] == 2 * 0x8000000  # the RAM, as LXD counts it
    assert mem["nodes"] == [{"numa_node": 0, "hugepages_used": 0, "hugepages_total": 0,
                             "used": 1000 * 1024, "total": 4000 * 1024}]
    (card,) = res["network"]["cards"]  # the bridge has no device: not a card
    assert card["driver"] == "e1000" and card["pci_address"] == "0000:00:03.0"
    assert card["vendor_id"] == "1af4" and card["numa_node"] == 0
    assert card["ports"][0]["id"] == "eth0" and card["ports"][0]["link_detected"] is True
    (d,) = res["storage"]["disks"]  # loop0 has no device
    assert d["id"] == "vda" and d["device"] == "254:0" and d["size"] == 2048 * 512
    assert d["type"] == "virtio" and d["pci_address"] == "0000:00:02.0"
    assert d["partitions"] == [{"id": "vda1", "device": "254:1", "read_only": False,
                                "size": 1024 * 512, "partition": 1}]
    assert res["system"]["type"] == "virtual-machine"
    assert res["gpu"] == {"cards": [], "total": 0}


def test_resources_of_an_empty_tree_do_not_fail(tmp_path: Path) -> None:
    res = host_resources(tmp_path)
    assert res["cpu"]["total"] == 0 and res["storage"]["disks"] == []


# -- config and the server ---------------------------------------------------------------------------

def test_metrics_address_syntax_and_default_port() -> None:
    assert trust.parse_address(":", "core.metrics_address") == (None, 9100)
    assert trust.parse_address("127.0.0.1", "core.metrics_address") == ("127.0.0.1", 9100)
    assert trust.parse_address("[::1]:8444", "core.metrics_address") == ("::1", 8444)
    assert trust.validate_server_config({"core.metrics_address": ":8444"}) == \
        {"core.metrics_address": ":8444"}
    with pytest.raises(BadRequest, match="core.metrics_address"):
        trust.validate_server_config({"core.metrics_address": "1.2.3.4:99999"})


def test_metrics_and_resources_routes(fake: FakeEngine) -> None:
    fake.add("c1")

    async def body(client: Any) -> None:
        r = await client.get("/1.0/metrics")
        assert r.status == 200 and r.headers["Content-Type"] == "text/plain"
        assert 'lxd_procs_total{name="c1",project="default",type="container"} 1' \
            in await r.text()
        r = await client.get("/1.0/metrics?project=other")
        assert "c1" not in await r.text()
        r = await client.get("/1.0/resources")
        assert (await r.json())["metadata"]["cpu"]["total"] == 2
        r = await client.get("/1.0")
        exts = (await r.json())["metadata"]["api_extensions"]
        assert {"metrics", "resources", "resources_v2"} <= set(exts)
    run_app(fake, body)
    assert fake.metrics.asked == [None, "other"]


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    return FakeEngine(root=tmp_path)


def _get(url: str, crt: str, key: str) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(crt, key)
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_a_metrics_certificate_may_scrape_and_nothing_else(
        served: Served, tmp_path: Path, client_cert: tuple[str, str]) -> None:  # noqa: F811
    url = _https(served)
    crt, key = tmp_path / "metrics.crt", tmp_path / "metrics.key"
    generate_certificate(crt, key, server=False, common_name="scraper")
    c = Client(str(served.sock))
    assert _get(url + "/1.0/metrics", str(crt), str(key)) == 403  # untrusted yet
    c.add_certificate(crt.read_text(), name="scraper", type="metrics")
    assert served.fake.trust.certificate_type(served.fake.trust.list_certificates()[0]
                                              .fingerprint) == "metrics"
    assert _get(url + "/1.0/metrics", str(crt), str(key)) == 200
    assert _get(url + "/1.0/instances", str(crt), str(key)) == 403
    assert _get(url + "/1.0/resources", str(crt), str(key)) == 403
    # core.metrics_authentication=false: anyone may scrape, and only scrape (LXD)
    assert _get(url + "/1.0/metrics", *client_cert) == 403
    c.update_server({"core.metrics_authentication": "false"})
    assert _get(url + "/1.0/metrics", *client_cert) == 200
    assert _get(url + "/1.0/instances", *client_cert) == 403
    c.update_server({"core.metrics_authentication": ""})
    assert _get(url + "/1.0/metrics", *client_cert) == 403
    with pytest.raises(BadRequest, match="not a boolean"):
        c.update_server({"core.metrics_authentication": "maybe"})
    # a client certificate may scrape too
    c.add_certificate(Path(client_cert[0]).read_text(), name="admin")
    assert _get(url + "/1.0/metrics", *client_cert) == 200
    assert _get(url + "/1.0/instances", *client_cert) == 200


def test_cli_metrics_address_and_metrics_certificate(
        served: Served, client_cert: tuple[str, str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import contextlib
    import json

    from cove.cli.main import main

    monkeypatch.setenv("COVE_NO_AUTOSTART", "1")
    root = ["--root", str(served.sock.parent)]
    sock = served.sock.parent / "unix.socket"
    if sock != served.sock:
        sock.symlink_to(served.sock)
    try:
        assert main([*root, "config", "set", "core.metrics_address", "127.0.0.1:9100"]) == 0
        assert main([*root, "config", "get", "core.metrics_address"]) == 0
        assert capsys.readouterr().out == "127.0.0.1:9100\n"
        assert main([*root, "config", "set", "core.metrics_address", "1.2.3.4:0"]) == 1
        assert "core.metrics_address" in capsys.readouterr().err
        assert main([*root, "config", "trust", "add", client_cert[0], "--type", "metrics"]) == 0
        assert main([*root, "config", "trust", "list", "-f", "json"]) == 0
        [cert] = json.loads(capsys.readouterr().out)
        assert cert["type"] == "metrics"
        assert served.fake.trust.is_trusted(cert["fingerprint"]) is False  # not a client
        assert main([*root, "config", "trust", "add", client_cert[0], "--type", "root"]) == 2
    finally:
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()


# -- the engine's metrics service (real store, run table and operations) --------------------------

def test_metrics_service_caches_instances_not_the_daemon(tmp_path: Path) -> None:
    from cove.engine._metrics import Metrics
    from cove.engine._runs import Paths, RunTable
    from cove.engine.operations import Operations
    from cove.model.records import Instance
    from cove.store import Store

    store = Store(tmp_path / "cove.db")
    try:
        data = tmp_path / "data"
        data.mkdir()
        store.add_instance(Instance(name="web", image="f" * 64, devices={
            "data": {"type": "disk", "source": str(data), "path": "/data"},
            "gone": {"type": "disk", "source": str(tmp_path / "gone"), "path": "/gone"},
            "vol": {"type": "disk", "pool": "default", "source": "vol1", "path": "/vol"}}))
        store.add_instance(Instance(name="db", image="f" * 64))
        runs = RunTable()
        runs.pids["web"] = os.getpid()  # /proc/PID/net/dev of this process: real counters
        now = [1000.0]
        m = Metrics(store=store, runs=runs, paths=Paths(tmp_path), operations=Operations(),
                    clock=lambda: now[0], cache_seconds=60)
        first = parse_metrics(m.text())
        names = {lb.get("name") for _, lb, _ in first} - {None}
        assert names == {"web"}  # db is stopped: no samples
        assert ("lxd_instances", {"project": "default", "type": "container"}, 2.0) in first
        assert any(n == "lxd_network_receive_bytes_total" and lb["device"] == "lo"
                   for n, lb, _ in first)
        # a host-path disk device: its filesystem, at its path in the container
        fs = [(lb, v) for n, lb, v in first if n == "lxd_filesystem_size_bytes"]
        assert [lb["mountpoint"] for lb, _ in fs] == ["/data"]
        assert fs[0][0]["fstype"] and fs[0][1] == os.statvfs(data).f_blocks * \
            os.statvfs(data).f_frsize
        # within cache_seconds the instance samples are the same build; uptime is not cached
        runs.pids["db"] = os.getpid()
        now[0] += 5
        second = parse_metrics(m.text())
        assert {lb.get("name") for _, lb, _ in second} - {None} == {"web"}
        assert ("lxd_uptime_seconds", {}, 5.0) in second
        assert parse_metrics(m.text(project="default")) == second
        assert not any("name" in lb for _, lb, _ in parse_metrics(m.text(project="other")))
        m.cache_seconds = 0  # expired: rebuilt
        assert {lb.get("name") for _, lb, _ in parse_metrics(m.text())} - {None} == \
            {"web", "db"}
    finally:
        store.close()
