"""``cove metrics`` and ``cove info --resources`` against the fake server."""

from __future__ import annotations

import os
from typing import Any

import pytest
from test_client_fakelxd import FakeLXD, Reply, error, sync

from cove.cli.main import main

pytest_plugins = ("test_client_fakelxd",)

TEXT = ("# HELP lxd_procs_total The number of running processes.\n"
        "# TYPE lxd_procs_total gauge\n"
        'lxd_procs_total{name="web",project="default",type="container"} 3\n'
        'lxd_procs_total{name="db",project="default",type="container"} 1\n'
        "# HELP lxd_uptime_seconds The daemon uptime in seconds.\n"
        "# TYPE lxd_uptime_seconds counter\n"
        "lxd_uptime_seconds 12.5\n"
        "# EOF\n")

# LXD 5.0's answer on a 2-CPU virtio host (captured), as lxc 5.0 prints it below
RESOURCES: dict[str, Any] = {
    "cpu": {"architecture": "x86_64", "total": 2, "sockets": [{
        "name": "AMD EPYC", "vendor": "AuthenticAMD", "socket": 0,
        "cache": [{"level": 1, "type": "Data", "size": 32768},
                  {"level": 3, "type": "Unified", "size": 33554432}],
        "cores": [{"core": i, "die": 0, "threads": [
            {"id": i, "numa_node": 0, "thread": 0, "online": True, "isolated": False}]}
            for i in (0, 1)]}]},
    "memory": {"nodes": [], "hugepages_total": 0, "hugepages_used": 0,
               "hugepages_size": 2097152, "used": 1095216660, "total": 25769803776},
    "gpu": {"cards": [], "total": 0},
    "network": {"total": 1, "cards": [{
        "driver": "virtio_net", "driver_version": "6.1", "numa_node": 0,
        "pci_address": "0000:00:03.0", "ports": [{
            "id": "eth0", "address": "02:fc:00:00:00:01", "port": 0, "protocol": "ethernet",
            "auto_negotiation": False, "link_detected": True}]}]},
    "storage": {"total": 1, "disks": [{
        "id": "vda", "device": "254:0", "type": "virtio", "read_only": False,
        "size": 274877906944, "removable": False, "numa_node": 0, "partitions": []}]},
}

LXC_TEXT = """\
CPU (x86_64):
  Vendor: AuthenticAMD
  Name: AMD EPYC
  Caches:
    - Level 1 (type: Data): 32KiB
    - Level 3 (type: Unified): 32MiB
  Cores:
    - Core 0
      Frequency: 0Mhz
      Threads:
        - 0 (id: 0, online: true, NUMA node: 0)
    - Core 1
      Frequency: 0Mhz
      Threads:
        - 0 (id: 1, online: true, NUMA node: 0)

Memory:
  Free: 22.98GiB
  Used: 1.02GiB
  Total: 24.00GiB

NIC:
  NUMA node: 0
  PCI address: 0000:00:03.0
  Driver: virtio_net (6.1)
  Ports:
    - Port 0 (ethernet)
      ID: eth0
      Address: 02:fc:00:00:00:01
      Auto negotiation: false
      Link detected: true

Disk:
  NUMA node: 0
  ID: vda
  Device: 254:0
  Type: virtio
  Size: 256.00GiB
  Read-Only: false
  Removable: false
"""


@pytest.fixture
def cli(fake: FakeLXD, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("COVE_DIR", os.path.dirname(fake.socket_path))
    monkeypatch.setenv("COVE_NO_AUTOSTART", "1")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_metrics_prints_the_text(cli, fake: FakeLXD) -> None:  # type: ignore[no-untyped-def]
    fake.route("GET", "/1.0/metrics")(
        lambda req: Reply(200, TEXT.encode(), {"Content-Type": "text/plain"}))
    assert cli("metrics") == (0, TEXT, "")
    code, out, _ = cli("metrics", "db", "--project", "default")
    assert code == 0 and 'name="db"' in out and 'name="web"' not in out
    assert "lxd_uptime_seconds 12.5" in out and out.endswith("# EOF\n")
    assert fake.find("GET", "/1.0/metrics")[-1].query == {"project": "default"}


def test_metrics_error_is_one_line(cli, fake: FakeLXD) -> None:  # type: ignore[no-untyped-def]
    fake.route("GET", "/1.0/metrics")(lambda req: error(403, "not authorized"))
    assert cli("metrics") == (1, "", "Error: not authorized\n")


def test_info_resources_prints_as_lxc_does(cli, fake: FakeLXD) -> None:  # type: ignore[no-untyped-def]
    fake.route("GET", "/1.0/resources")(lambda req: sync(RESOURCES))
    assert cli("info", "--resources") == (0, LXC_TEXT, "")
    code, _, err = cli("info", "web", "--resources")
    assert code == 2 and "give no NAME" in err
