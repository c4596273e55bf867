"""Profiles: cove has one, ``default``, whose only device is ``eth0`` on the
root's default network. An instance's expanded devices are its profiles'
devices overlaid by its own (a device of ``type: none`` hides one).
"""

from __future__ import annotations

from cove.model.errors import NotFound
from cove.model.records import Instance
from cove.store import Store

__all__ = ["DefaultNetwork", "Profiles"]

_META_DEFAULT = "network.default"


class DefaultNetwork:
    """The name of the default profile's network, kept in the store's meta
    table and cached (only the networks service writes it)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cached: str | None | bool = False  # False: not read yet

    def get(self) -> str | None:
        """The network's name, None when there is none."""
        if self._cached is False:
            self._cached = self._store.get_meta(_META_DEFAULT) or None
        return self._cached if isinstance(self._cached, str) else None

    def recorded(self) -> bool:
        """Whether a default was ever chosen (even "none")."""
        return self._store.get_meta(_META_DEFAULT) is not None

    def set(self, name: str | None) -> None:
        """Record ``name`` (None: no default network). Idempotent."""
        self._store.set_meta(_META_DEFAULT, name or "")
        self._cached = name


class Profiles:
    """Read-only profiles (writable profiles are issue 9's)."""

    def __init__(self, default_network: DefaultNetwork) -> None:
        self._default_network = default_network

    def names(self) -> list[str]:
        """The names of the profiles there are."""
        return ["default"]

    def check(self, profiles: list[str]) -> None:
        """Raises NotFound for a profile that does not exist."""
        for p in profiles:
            if p != "default":
                raise NotFound(f"Profile not found: {p}")

    def devices(self, profile: str) -> dict[str, dict[str, str]]:
        """A profile's devices (``{}`` for an unknown one)."""
        if profile != "default":
            return {}
        net = self._default_network.get()
        if not net:
            return {}
        return {"eth0": {"type": "nic", "network": net, "name": "eth0"}}

    def expand(self, profiles: list[str],
               devices: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        """Profile devices in list order, overlaid by ``devices``; ``type: none`` hides."""
        out: dict[str, dict[str, str]] = {}
        for p in profiles:
            out.update(self.devices(p))
        out.update(devices)
        return {k: dict(v) for k, v in out.items() if v.get("type") != "none"}

    def expanded_devices(self, inst: Instance) -> dict[str, dict[str, str]]:
        """The devices ``inst`` runs with."""
        return self.expand(inst.profiles, inst.devices)
