"""Networks: bridges, address leases, NICs in containers' namespaces,
published ports (nftables) and names (dnsmasq).

The pure parts (``model``, ``subnets``, ``nft``, ``dns``) import only the
standard library; the host drivers (``_netlink`` on ``_rtnl``'s messages,
``_nftables`` with libnftables, ``_dnsmasq``) are loaded by ``NetworkHost``
on first use. The names below load on first access, so ``import
cove.network.model`` (the CLI's ``-p`` parser) pays for nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {"NetSpec": "_host", "NetworkHost": "_host", "spec_of": "_host"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'cove.network' has no attribute {name!r}")
    module = importlib.import_module(f"cove.network.{_HOME.get(name, 'model')}")
    value = getattr(module, name)
    globals()[name] = value
    return value
