"""OCI runtime adapter: the pure spec builder, runc (or crun) driven through
conmon, and cgroup readings.

Runtimes live in a registry keyed by name. crun speaks runc's command line,
so it shares runc's adapter with another binary; it is the better choice
on hosts with pure cgroup v2 (on hybrid hosts crun 1.8 refuses to run).
"""

from pathlib import Path

from cove.runtime.runc import Runc, RuntimeState
from cove.runtime.spec import SpecInput, build_spec


class Crun(Runc):
    """crun, driven exactly like runc (same CLI, same conmon protocol)."""

    def __init__(self, state_dir: Path, conmon: str = "conmon") -> None:
        super().__init__(state_dir, runc="crun", conmon=conmon)


RUNTIMES: dict[str, type[Runc]] = {"runc": Runc, "crun": Crun}

__all__ = ["RUNTIMES", "Crun", "Runc", "RuntimeState", "SpecInput", "build_spec"]
