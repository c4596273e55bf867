"""model.publish: the str-method shape checks accept exactly what its regexes did."""

from __future__ import annotations

import random
import re

from cove.model.publish import is_ipv4_shape, is_ports_shape

_PORTS = re.compile(r"^\d{1,5}(-\d{1,5})?(,\d{1,5}(-\d{1,5})?)*$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_ALPHABET = "0123456789" * 4 + ".,-\n x٣²"


def _corpus() -> list[str]:
    rnd = random.Random(14)
    words = ["", "\n", "80", "80\n", "80\n\n", "8080-8081", "1,2-3", "1-2-3", "1,", ",1",
             "123456", "1.2.3.4", "1.2.3.4\n", "1.2.3", "1.2.3.4.5", "1234.1.1.1", "٣.٣.٣.٣",
             "²", "1..2.3", "0.0.0.0"]
    words += ["".join(rnd.choice(_ALPHABET) for _ in range(rnd.randint(1, 14)))
              for _ in range(20000)]
    return words


def test_shapes_are_the_regexes() -> None:
    for text in _corpus():
        assert is_ports_shape(text) == bool(_PORTS.match(text)), text
        assert is_ipv4_shape(text) == bool(_IPV4.match(text)), text
