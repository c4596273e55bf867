"""Build an OCI runtime ``config.json`` from an instance's config (pure).

Design note: everything the host contributes (rlimits, cgroup path) comes in
through ``SpecInput``, so the builder reads nothing and a golden test pins
its output. The defaults follow what a system container needs from runc:
its own pid, ipc, uts, mount, network and cgroup namespaces, Docker's
default capability set, a private /dev, and the kernel's sensitive /proc
and /sys paths masked or read-only.

Superblocks: every one a container has costs every memory cgroup on the host
a shrinker slot (docs/performance.md, "Host memory per container"), so what
the host can give without a filesystem of the container's own comes as a
bind: /dev, /dev/shm and /run from directories on one tmpfs cove keeps for
all containers (``SpecInput.scratch``), /sys/fs/cgroup on a cgroup v1 host
from a read-only skeleton with the container's own cgroups bound into it
(``SpecInput.cgroupfs``), masked directories outside /proc from one empty
directory (``SpecInput.masks``), and /proc/acpi read-only instead of masked
(runc allows no bind into /proc; what it could hide is a list of ACPI
devices, and writing to it is what matters). RLIMIT_NOFILE is set to the host's own
hard limit and never above it: the daemon lacks CAP_SYS_RESOURCE here, and
asking runc to raise a hard limit fails the start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cove.model.config import Resources

__all__ = ["DEFAULT_CAPS", "DEFAULT_PATH", "MASKED_PATHS", "ExecSpec", "SpecInput",
           "bind_mount", "build_spec", "process_env"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPS = [
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
    "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
]

_MASKED = [
    "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]
MASKED_PATHS = tuple(_MASKED)
_READONLY = ["/proc/acpi", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


@dataclass
class ExecSpec:
    """A command to run in a running container (``runc exec`` or cove-nsexec)."""

    args: list[str]
    env: dict[str, str]
    cwd: str | None = None
    uid: int = 0
    gid: int = 0
    tty: bool = False
    width: int = 80
    height: int = 24
    groups: tuple[int, ...] = ()  # supplementary groups, besides the spec's



@dataclass(frozen=True)
class SpecInput:
    """Everything the spec depends on."""

    hostname: str
    args: list[str]
    rootfs: str
    cgroups_path: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    resources: Resources = field(default_factory=Resources)
    nofile: tuple[int, int] = (1024, 1024)
    netns: str | None = None  # path of a network namespace to join; None = new one
    mounts: tuple[dict[str, Any], ...] = ()
    terminal: bool = False  # a pty as /dev/console and the init's stdio
    # (an empty read-only host directory, masked directories outside /proc):
    # those are masked with a read-only bind of it instead of runc's tmpfs
    # each, a superblock each (docs/performance.md, host memory); runc
    # refuses binds into /proc, so those stay tmpfs. Only directories that
    # exist (runc would create a bind's target in the read-only /sys).
    masks: tuple[str, tuple[str, ...]] | None = None
    # /dev, /dev/shm and /run: host directories to bind (made and filled
    # with runc's device nodes by the caller, on a tmpfs shared by all
    # containers); None = a tmpfs each, made by runc
    scratch: tuple[str, str, str] | None = None
    # the mounts that make /sys/fs/cgroup (cgroup v1: a read-only skeleton
    # and the container's cgroups bound into it); None = runc's, a tmpfs
    cgroupfs: tuple[dict[str, Any], ...] | None = None


_NOSUIDEVEXEC = ("nosuid", "nodev", "noexec")
_DEV = {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
_PTS = {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}
_SHM = {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}
_MQUEUE = {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
           "options": ["nosuid", "noexec", "nodev"]}
_SYS = {"destination": "/sys", "type": "sysfs", "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"]}
_CGROUP = {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
           "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
_RUN = {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=755"]}


def bind_mount(destination: str, source: str, *options: str) -> dict[str, Any]:
    """An OCI bind mount entry of ``source`` at ``destination``."""
    return {"destination": destination, "type": "bind", "source": source,
            "options": ["bind", *options]}


_bind = bind_mount


def _copy(m: dict[str, Any]) -> dict[str, Any]:
    return {**m, "options": list(m["options"])} if "options" in m else dict(m)


def _resources(r: Resources) -> dict[str, Any]:
    out: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    memory: dict[str, Any] = {}
    if r.memory is not None:
        memory["limit"] = r.memory
    if r.memory_reservation is not None:
        memory["reservation"] = r.memory_reservation
    if r.memory_swap is not None:
        memory["swap"] = r.memory_swap
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if r.cpu_quota is not None:
        cpu["quota"] = r.cpu_quota
        cpu["period"] = r.cpu_period or 100_000
    if r.cpus is not None:
        cpu["cpus"] = r.cpus
    if cpu:
        out["cpu"] = cpu
    if r.pids is not None:
        out["pids"] = {"limit": r.pids}
    return out


def process_env(env: dict[str, str], uid: int = 0) -> list[str]:
    """The spec's ``process.env``: cove's defaults under ``env`` (pure)."""
    out = {"PATH": DEFAULT_PATH, "HOME": "/root" if uid == 0 else "/", "TERM": "xterm",
           "container": "cove"}
    out.update(env)
    return [f"{k}={v}" for k, v in out.items()]


def build_spec(i: SpecInput) -> dict[str, Any]:
    """Return the OCI runtime spec (as a dict ready for ``json.dump``)."""
    soft, hard = i.nofile
    namespaces: list[dict[str, str]] = [
        {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
        {"type": "cgroup"},
    ]
    namespaces.append({"type": "network", "path": i.netns} if i.netns else {"type": "network"})
    masked, binds = list(_MASKED), []
    if i.masks:
        source, dirs = i.masks
        for d in dirs:
            if d in masked and not d.startswith("/proc/"):
                masked.remove(d)
                binds.append(_bind(d, source, "ro", *_NOSUIDEVEXEC))
    if i.scratch:
        dev, shm, run = i.scratch
        # a bind at /dev: runc makes no device node, the caller has
        early = [_bind("/dev", dev, "nosuid"), _PTS, _bind("/dev/shm", shm, *_NOSUIDEVEXEC),
                 _MQUEUE, _SYS]
        tail = [_bind("/run", run, "nosuid", "nodev")]
    else:
        early = [_DEV, _PTS, _SHM, _MQUEUE, _SYS]
        tail = [_RUN]
    cgroupfs = i.cgroupfs if i.cgroupfs is not None else (_CGROUP,)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": i.terminal,
            "user": {"uid": i.uid, "gid": i.gid},
            "args": list(i.args),
            "env": process_env(i.env, i.uid),
            "cwd": i.cwd,
            "capabilities": {k: list(DEFAULT_CAPS) for k in
                             ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": hard, "soft": min(soft, hard)}],
            "noNewPrivileges": False,
        },
        "root": {"path": i.rootfs, "readonly": False},
        "hostname": i.hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            *(_copy(m) for m in (*early, *cgroupfs, *tail)),
            *binds,
            *i.mounts,
        ],
        "linux": {
            "cgroupsPath": i.cgroups_path,
            "resources": _resources(i.resources),
            "namespaces": namespaces,
            "maskedPaths": masked,
            "readonlyPaths": list(_READONLY),
        },
    }
