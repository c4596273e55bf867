"""Suite-wide hooks: what the host offers (in the report header) and a count
of skips by reason at the end.

Every skip is drift to remove (CONVENTIONS.md), so the summary names each
reason with how many tests it skipped; a CI log then shows at a glance when
integration tests did not run. Fixtures live next to the tests that use them
(``tests/integration/conftest.py``), not here.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pytest

# Every coved the tests start inherits this environment (and the in-process
# engines read it): metrics are cached for 0.5 s instead of LXD's 8 s, so a
# test that scrapes for the container it just started waits that long at
# most, not 8 s per driver. The caching itself is unit-tested with its own
# clock (test_metrics_resources.py).
os.environ.setdefault("COVE_METRICS_CACHE", "0.5")


def pytest_report_header(config: pytest.Config) -> list[str]:
    tools = ", ".join(f"{t}={'yes' if shutil.which(t) else 'no'}"
                      for t in ("runc", "conmon", "lxc"))
    busybox = "yes" if os.path.exists("/bin/busybox") else "no"
    return [f"cove host: uid={os.geteuid()}, {tools}, /bin/busybox={busybox}"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            exitstatus: int, config: pytest.Config) -> None:
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            reason = str(longrepr[2]).removeprefix("Skipped: ")
        else:
            reason = str(longrepr)
        reasons[reason] += 1
    if not reasons:
        return
    terminalreporter.section(f"skips: {sum(reasons.values())} (each one is drift to remove)")
    for reason, n in reasons.most_common():
        terminalreporter.line(f"{n:5d}  {reason}")
