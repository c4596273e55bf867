"""What cove records about instances and images (plain data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cove.model.states import Status

__all__ = ["Alias", "Backup", "Image", "Instance", "Snapshot"]


@dataclass
class Instance:
    """One instance as stored. ``status`` is the recorded (last known) one."""

    name: str
    image: str  # fingerprint of the image it was created from
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=lambda: ["default"])
    description: str = ""
    ephemeral: bool = False
    status: Status = Status.STOPPED
    architecture: str = "x86_64"
    created_at: float = 0.0
    last_used_at: float = 0.0
    last_exit_code: int | None = None
    id: int = 0  # database row id; also names runtime state
    # the project it belongs to; ``name`` is then its key (``cove.model.projects``)
    project: str = "default"
    # profile devices merged with ``devices``, filled in by the engine (not stored)
    expanded_devices: dict[str, dict[str, str]] | None = field(default=None, compare=False)
    # profile config overlaid by ``config``, filled in by the engine (not stored)
    expanded_config: dict[str, str] | None = field(default=None, compare=False)


@dataclass
class Snapshot:
    """One snapshot of an instance as stored: the instance's settings when
    it was taken, and ``dir``, the directory under the instance's
    ``snapshots/`` that holds its copy of the upper layer (an id, not the
    name, so a rename is one row update)."""

    instance: str  # the instance's key
    name: str
    dir: str
    created_at: float = 0.0
    expires_at: float = 0.0  # 0: never
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)
    ephemeral: bool = False
    architecture: str = "x86_64"
    image: str = ""
    size: int = 0  # bytes of the copied upper layer, measured when taken


@dataclass
class Backup:
    """One backup of an instance as stored: a finished tarball in LXD's
    layout under the instance's ``backups/`` named ``file`` (an id, so a
    rename is one row update)."""

    instance: str  # the instance's key
    name: str
    file: str
    created_at: float = 0.0
    expires_at: float = 0.0  # 0: never
    instance_only: bool = False
    optimized_storage: bool = False
    compression: str = "gzip"
    size: int = 0  # bytes of the tarball


@dataclass
class Alias:
    name: str
    target: str
    description: str = ""


@dataclass
class Image:
    fingerprint: str
    size: int
    architecture: str = "x86_64"
    properties: dict[str, str] = field(default_factory=dict)
    filename: str = ""
    public: bool = False
    created_at: float = 0.0
    uploaded_at: float = 0.0
    last_used_at: float = 0.0
    aliases: list[Alias] = field(default_factory=list)
    # cove's own, not on the LXD wire: the init command and env from an OCI image.
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # a pulled image's origin (LXD's cached, auto_update, update_source), from
    # ``store.image_sources``; an uploaded or published one has none.
    cached: bool = False
    auto_update: bool = False
    update_source: dict[str, str] | None = None


@dataclass
class Network:
    """A managed network (a bridge cove made). ``config`` holds LXD's keys
    with ``auto`` already resolved to the subnet cove picked."""

    name: str
    type: str = "bridge"
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass
class Lease:
    """An address a running instance's NIC holds on a network."""

    network: str
    instance: str
    device: str
    address: str  # IPv4, "" when the network has none
    hwaddr: str
    address6: str = ""
    id: int = 0  # names the NIC's host-side veth
