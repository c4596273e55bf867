"""OCI runtime adapter: the pure spec builder, runc driven through conmon,
and cgroup readings."""

from cove.runtime.spec import SpecInput, build_spec
from cove.runtime.runc import Runc, RuntimeState

__all__ = ["SpecInput", "build_spec", "Runc", "RuntimeState"]
