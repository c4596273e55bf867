"""A listing reads every veth's counters from one /proc/net/dev; it must say
what the per-link sysfs read (``Netlink.counters``) says."""

from __future__ import annotations

import os

from cove.network._netlink import Netlink, parse_net_dev

SAMPLE = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  123456     789    0    0    0     0          0         0   123456     789    0    0    0     0       0          0
cvab12-3: 100 2 0 0 0 0 0 0 5000 40 0 0 0 0 0 0
broken: 1 2 3
"""


def test_parse_reverses_the_host_end() -> None:
    got = parse_net_dev(SAMPLE)
    assert set(got) == {"lo", "cvab12-3"}
    # what the host end of a veth sent, the container received
    assert got["cvab12-3"] == {"bytes_received": 5000, "bytes_sent": 100,
                               "packets_received": 40, "packets_sent": 2}


def test_every_link_and_the_same_numbers_as_sysfs() -> None:
    links = os.listdir("/sys/class/net")
    before = {n: Netlink.counters(n) for n in links}
    table = Netlink.all_counters()
    after = {n: Netlink.counters(n) for n in links}
    assert set(links) <= set(table)
    for n in links:
        b, a = before[n], after[n]
        if b is None or a is None:  # went away meanwhile
            continue
        for key, value in table[n].items():
            assert b[key] <= value <= a[key], (n, key)
