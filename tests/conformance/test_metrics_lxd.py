"""``/1.0/metrics`` and ``/1.0/resources`` on coved and on the real LXD: one
running container, the same metric families with the same label names and
TYPE lines, and a resources object with the same fields ``lxc info
--resources`` reads.

LXD 5.0 (Debian's) predates some of what cove also emits, from later LXD
(``lxd_memory_OOM_kills_total``, ``lxd_cpu_effective_total``,
``lxd_instances``, the daemon's ``lxd_operations_total``,
``lxd_uptime_seconds``, ``lxd_warnings_total``): so LXD's families must be
a subset of cove's, not equal. Its HELP texts for two families were fixed
later (``Inactive_anon`` said "file-backed", ``MemTotal`` "used memory"):
cove has the fixed ones, so HELP lines are not compared.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import FEATURE_DRIVERS
from lxdhost import IMAGE

from cove.api import parse_metrics
from cove.client import Client, RestDriver

SOCKETS = {"rest-lxd": "/var/lib/lxd/unix.socket"}


@pytest.fixture(params=["rest-coved", "rest-lxd"])
def endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "rest-lxd":
        lxd = request.getfixturevalue("lxd_host")
        if isinstance(lxd, str):
            pytest.skip(lxd)
        yield SOCKETS["rest-lxd"]
    else:
        yield str(request.getfixturevalue("cove_host").coved.socket)


def _families(text: str) -> dict[str, str]:
    """metric name -> its TYPE."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            out[name] = kind
    return out


def _shape(text: str, name: str) -> dict[str, set[frozenset[str]]]:
    """metric -> the label-name sets of the container's samples."""
    out: dict[str, set[frozenset[str]]] = {}
    for metric, labels, _ in parse_metrics(text):
        if labels.get("name") == name:
            out.setdefault(metric, set()).add(frozenset(labels))
    return out


# What LXD 5.0 emits for a running container on this host kind (cgroup v1,
# dir pool), with the label names of each.
BASE = {"name", "project", "type"}
EXPECTED = {
    "lxd_cpu_seconds_total": BASE | {"cpu", "mode"},
    "lxd_memory_Active_anon_bytes": BASE,
    "lxd_memory_Active_bytes": BASE,
    "lxd_memory_Inactive_bytes": BASE,
    "lxd_memory_Cached_bytes": BASE,
    "lxd_memory_MemTotal_bytes": BASE,
    "lxd_memory_MemFree_bytes": BASE,
    "lxd_memory_MemAvailable_bytes": BASE,
    "lxd_memory_RSS_bytes": BASE,
    "lxd_network_receive_bytes_total": BASE | {"device"},
    "lxd_network_transmit_packets_total": BASE | {"device"},
    "lxd_network_receive_drop_total": BASE | {"device"},
    "lxd_procs_total": BASE,
}


def test_metrics_families_and_labels(endpoint: str) -> None:
    name = f"covetest-metrics-{secrets.token_hex(3)}"
    d = RestDriver(endpoint)
    try:
        d.create_container(name, alias=IMAGE)
        c = Client(endpoint)
        text = ""
        for _ in range(40):  # cove (and newer LXD) cache for 8 s
            text = c.metrics()
            shape = _shape(text, name)
            if "lxd_procs_total" in shape and "lxd_cpu_seconds_total" in shape:
                break
            time.sleep(0.5)
        shape = _shape(text, name)
        for metric, labels in EXPECTED.items():
            assert shape.get(metric) == {frozenset(labels)}, (metric, shape.get(metric))
        devices = {lb["device"] for m, lb, _ in parse_metrics(text)
                   if m == "lxd_network_receive_bytes_total" and lb.get("name") == name}
        assert "lo" in devices
        fams = _families(text)
        assert fams["lxd_procs_total"] == "gauge"
        assert fams["lxd_cpu_seconds_total"] == "counter"
        assert fams["lxd_memory_Active_bytes"] == "gauge"
        assert fams["lxd_network_receive_bytes_total"] == "counter"
        assert text.rstrip("\n").endswith("# EOF")
    finally:
        d.delete_container(name)
        d.close()


# what lxc info --resources and pylxd read, with their JSON types
RESOURCE_FIELDS: dict[str, Any] = {
    "cpu": {"architecture": str, "sockets": list, "total": int},
    "memory": {"used": int, "total": int, "hugepages_total": int, "nodes": list},
    "gpu": {"cards": list, "total": int},
    "network": {"cards": list, "total": int},
    "storage": {"disks": list, "total": int},
    "usb": {"devices": list, "total": int},
    "pci": {"devices": list, "total": int},
    "system": {"type": str, "uuid": str, "vendor": str, "product": str},
}


def test_resources_shape(endpoint: str) -> None:
    res = Client(endpoint).resources()
    for section, fields in RESOURCE_FIELDS.items():
        for key, kind in fields.items():
            assert isinstance(res[section][key], kind), (section, key, res[section][key])
    sock = res["cpu"]["sockets"][0]
    assert {"name", "vendor", "socket", "cache", "cores"} <= set(sock)
    core = sock["cores"][0]
    assert {"core", "die", "threads"} <= set(core)
    assert {"id", "numa_node", "thread", "online", "isolated"} <= set(core["threads"][0])
    for card in res["network"]["cards"]:
        assert {"driver", "driver_version", "ports", "numa_node", "pci_address"} <= set(card)
        for port in card["ports"]:
            assert {"id", "address", "port", "protocol", "auto_negotiation",
                    "link_detected"} <= set(port)
    for disk in res["storage"]["disks"]:
        assert {"id", "device", "type", "read_only", "size", "removable", "numa_node",
                "partitions"} <= set(disk)
    assert res["cpu"]["total"] == sum(len(c["threads"]) for s in res["cpu"]["sockets"]
                                      for c in s["cores"])


@pytest.mark.parametrize("host", FEATURE_DRIVERS, indirect=True)  # see conftest
def test_every_driver_reads_resources_and_metrics(host: Any) -> None:
    """``Driver.resources()`` and ``Driver.metrics()``, the same on every
    driver: REST, the asyncio one's flow, ``lxc query`` / ``lxc query --raw``,
    ``cove query`` / ``cove metrics``, and the engine in-process."""
    import os

    res = host.driver.resources()
    assert res["cpu"]["total"] == os.cpu_count()
    assert res["memory"]["total"] > res["memory"]["used"] > 0
    name = host.name("metrics")
    host.driver.create_container(name, alias=host.image)
    for _ in range(40):  # the 8 s cache
        text = host.driver.metrics()
        if _shape(text, name).get("lxd_procs_total"):
            break
        time.sleep(0.5)
    assert text.rstrip("\n").endswith("# EOF")
    assert _shape(text, name)["lxd_procs_total"] == {frozenset(BASE)}
    assert not _shape(host.driver.metrics(project="covetest-none"), name)
