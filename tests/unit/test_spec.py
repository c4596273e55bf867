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
    got = build_spec(_input(masks=("/srv/empty", ("/sys/firmware", "/proc/acpi", "/etc"))))
    assert "/sys/firmware" not in got["linux"]["maskedPaths"]
    assert "/proc/acpi" in got["linux"]["maskedPaths"]  # runc allows no bind into /proc
    binds = [m for m in got["mounts"] if m["source"] == "/srv/empty"]
    assert binds == [{"destination": "/sys/firmware", "type": "bind", "source": "/srv/empty",
                      "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}]
    assert build_spec(_input())["linux"]["maskedPaths"] == list(MASKED_PATHS)
