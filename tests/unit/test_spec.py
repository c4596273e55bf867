"""The OCI spec builder against a golden file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cove.model.config import Resources
from cove.runtime.spec import MASKED_PATHS, SpecInput, build_spec

GOLDEN = Path(__file__).parent / "golden" / "spec_web.json"


def _input(**kw: Any) -> SpecInput:
    return SpecInput(
        hostname="web", args=["/bin/sh", "-c", "sleep 1000"], rootfs="/r/instances/web/rootfs",
        cgroups_path="/cove/web", env={"FOO": "bar"}, cwd="/srv", uid=1000, gid=1000,
        resources=Resources(memory=64 * 2**20, cpu_quota=50_000, cpu_period=100_000, pids=10),
        nofile=(4096, 4096), **kw,
    )


def test_spec_matches_golden() -> None:
    got = build_spec(_input())
    if os.environ.get("COVE_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(GOLDEN.read_text())


def test_spec_never_raises_nofile_above_hard_limit() -> None:
    got = build_spec(SpecInput(hostname="a", args=["x"], rootfs="/r", cgroups_path="/c",
                               nofile=(8192, 1024)))
    (limit,) = got["process"]["rlimits"]
    assert limit["hard"] == 1024 and limit["soft"] <= 1024


def test_spec_joins_a_given_netns() -> None:
    got = build_spec(SpecInput(hostname="a", args=["x"], rootfs="/r", cgroups_path="/c",
                               netns="/run/netns/x"))
    assert {"type": "network", "path": "/run/netns/x"} in got["linux"]["namespaces"]


def test_spec_without_limits_has_only_device_rules() -> None:
    got = build_spec(SpecInput(hostname="a", args=["x"], rootfs="/r", cgroups_path="/c"))
    assert got["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}


def test_spec_masks_directories_outside_proc_with_a_bind() -> None:
    # a tmpfs per masked directory is a superblock per container (a shrinker
    # in every memory cgroup); a read-only bind of one empty directory is not
    got = build_spec(_input(masks=("/srv/empty", ("/sys/firmware", "/proc/asound", "/etc"))))
    assert "/sys/firmware" not in got["linux"]["maskedPaths"]
    assert "/proc/asound" in got["linux"]["maskedPaths"]  # runc allows no bind into /proc
    binds = [m for m in got["mounts"] if m["source"] == "/srv/empty"]
    assert binds == [{"destination": "/sys/firmware", "type": "bind", "source": "/srv/empty",
                      "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}]
    assert build_spec(_input())["linux"]["maskedPaths"] == list(MASKED_PATHS)


def _mount(spec: dict[str, Any], destination: str) -> dict[str, Any]:
    (m,) = [m for m in spec["mounts"] if m["destination"] == destination]
    return m


def test_spec_binds_dev_shm_and_run_from_scratch_directories() -> None:
    # a tmpfs each is a superblock per container; directories of one shared
    # tmpfs are not (the caller fills /dev: runc makes no node in a bind)
    got = build_spec(_input(scratch=("/s/web/dev", "/s/web/shm", "/s/web/run")))
    assert _mount(got, "/dev") == {"destination": "/dev", "type": "bind",
                                   "source": "/s/web/dev", "options": ["bind", "nosuid"]}
    assert _mount(got, "/dev/shm")["options"] == ["bind", "nosuid", "nodev", "noexec"]
    assert _mount(got, "/run") == {"destination": "/run", "type": "bind",
                                   "source": "/s/web/run",
                                   "options": ["bind", "nosuid", "nodev"]}
    assert not [m for m in got["mounts"] if m["type"] == "tmpfs"]
    order = [m["destination"] for m in got["mounts"]]
    assert order.index("/dev") < order.index("/dev/pts") < order.index("/dev/shm")
    assert _mount(got, "/dev/pts")["type"] == "devpts"
    # without: runc's tmpfs, as before
    plain = build_spec(_input())
    assert {_mount(plain, d)["type"] for d in ("/dev", "/dev/shm", "/run")} == {"tmpfs"}


def test_spec_takes_the_given_cgroupfs_mounts() -> None:
    binds = ({"destination": "/sys/fs/cgroup", "type": "bind", "source": "/skel",
              "options": ["bind", "ro"]},
             {"destination": "/sys/fs/cgroup/cpu", "type": "bind",
              "source": "/sys/fs/cgroup/cpu/cove/web", "options": ["bind", "ro"]})
    got = build_spec(_input(cgroupfs=binds))
    assert [m for m in got["mounts"] if m["destination"].startswith("/sys/fs/cgroup")] == \
        list(binds)
    assert _mount(build_spec(_input()), "/sys/fs/cgroup")["type"] == "cgroup"


def test_spec_returns_fresh_mount_entries() -> None:
    # callers add to a spec's mounts and options; nothing is shared between two
    a, b = build_spec(_input()), build_spec(_input())
    _mount(a, "/dev")["options"].append("ro")
    assert "ro" not in _mount(b, "/dev")["options"]
