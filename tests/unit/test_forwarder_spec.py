"""The forwarder's spec parsing and its import diet: one forwarder runs per
proxy device, so it keeps to the standard library's C modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cove.network import forwarder

SCRIPT = Path(forwarder.__file__)


def test_parse_spec_is_json() -> None:
    spec = {"pid": 5, "bind": "host", "listen": {"proto": "tcp", "host": "127.0.0.1",
                                                 "ports": [80, 81], "path": ""},
            "mode": 420, "x": 1.5, "u": 'é"\\\n', "b": False, "n": None}
    assert forwarder.parse_spec(json.dumps(spec)) == spec
    for bad in ("", "[1]", '{"a": 1} x', "nope", '{"a": }'):
        with pytest.raises(ValueError):
            forwarder.parse_spec(bad)


def test_the_script_imports_no_python_wrappers() -> None:
    # as coved runs it: -I -S, no site, nothing of cove
    code = (f"import sys; sys.path.insert(0, {str(SCRIPT.parent)!r}); import forwarder; "
            "print(sorted(m for m in ('socket', 'json', 'enum', 're', 'selectors', 'signal') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]"
