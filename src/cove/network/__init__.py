"""Networks: bridges, address leases, NICs in containers' namespaces,
published ports (nftables) and names (dnsmasq).

The pure parts (``model``, ``subnets``, ``nft``, ``dns``) import only the
standard library; the host drivers (``_netlink`` with pyroute2,
``_nftables`` with libnftables, ``_dnsmasq``) are loaded by ``NetworkHost``
on first use, so importing this package costs the CLI nothing.
"""

from cove.network._host import NetSpec, NetworkHost, spec_of
from cove.network.model import (
    Nic,
    PortKey,
    Proxy,
    default_network_name,
    nic_from_device,
    parse_publish,
    proxy_from_device,
    root_id,
    validate_network_config,
    validate_network_name,
)

__all__ = [
    "NetSpec",
    "NetworkHost",
    "Nic",
    "PortKey",
    "Proxy",
    "default_network_name",
    "nic_from_device",
    "parse_publish",
    "proxy_from_device",
    "root_id",
    "spec_of",
    "validate_network_config",
    "validate_network_name",
]
