"""Rendering for the ``cove`` command: tables, csv, json, yaml, times, sizes.

Design note: ``list`` runs this on every call, so it uses only what the
standard library has already loaded (``csv`` and ``yaml`` are imported when
their format is asked for). Times are shown in UTC with the zone named
(``2024/05/01 10:20 UTC``): readable, and the same on every host, so scripts
and tests can rely on them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = [
    "FORMATS",
    "bytes_iec",
    "bytes_si",
    "compact",
    "csv_text",
    "json_text",
    "render",
    "table",
    "timestamp",
    "yaml_text",
]

FORMATS = ("table", "compact", "csv", "json", "yaml")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A boxed table as ``lxc`` draws it: centred headers, a rule after every row.

    A cell may hold several lines (``"a\\nb"``); its row grows to fit.
    """
    split_rows = [[str(c).split("\n") for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in split_rows:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], *(len(x) for x in lines))
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [rule, "|" + "|".join(f" {_center(h, w)} " for h, w in zip(headers, widths, strict=False)) + "|",
           rule]
    for row in split_rows:
        height = max((len(lines) for lines in row), default=1)
        for k in range(height):
            cells = (lines[k] if k < len(lines) else "" for lines in row)
            out.append("|" + "|".join(f" {c.ljust(w)} " for c, w in zip(cells, widths, strict=False)) + "|")
        out.append(rule)
    return "\n".join(out) + "\n"


def _center(text: str, width: int) -> str:
    # An odd gap puts the extra space on the right, as lxc's table writer does.
    left = (width - len(text)) // 2
    return " " * left + text.ljust(width - left)


def compact(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns separated by two spaces, no borders; multi-line cells joined by commas."""
    flat = [[str(c).replace("\n", ", ") for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in flat:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in flat]
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[Sequence[str]]) -> str:
    """Rows as CSV, without a header line (as ``lxc`` prints them)."""
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def json_text(obj: Any) -> str:
    import json  # only for --format json

    return json.dumps(obj, sort_keys=False) + "\n"


def yaml_text(obj: Any) -> str:
    """YAML via PyYAML (imported here, only for this format)."""
    import yaml

    return str(yaml.safe_dump(obj, default_flow_style=False, sort_keys=False,
                              allow_unicode=True))


def render(fmt: str, headers: Sequence[str], rows: Sequence[Sequence[str]], raw: Any) -> str:
    """Render a listing: ``rows`` for table/compact/csv, ``raw`` objects for json/yaml."""
    if fmt == "table":
        return table(headers, rows)
    if fmt == "compact":
        return compact(headers, rows)
    if fmt == "csv":
        return csv_text(rows)
    if fmt == "json":
        return json_text(raw)
    if fmt == "yaml":
        return yaml_text(raw)
    raise ValueError(f"unknown format {fmt!r}")


def timestamp(value: Any) -> str:
    """An LXD time (RFC 3339 string, or epoch seconds) as ``YYYY/MM/DD HH:MM UTC``.

    The zero time (Go's ``0001-01-01T00:00:00Z`` or the Unix epoch), empty
    values and 0 give "": they mean "never".
    """
    if value is None or value in ("", 0):
        return ""
    if isinstance(value, str):
        fast = _utc_minutes(value)
        if fast is not None:
            return fast
    from datetime import UTC, datetime

    try:
        if isinstance(value, (int, float)):
            dt = datetime.fromtimestamp(float(value), UTC)
        else:
            dt = _parse_rfc3339(str(value))
    except (ValueError, OverflowError, OSError):
        return str(value)
    if dt.year <= 1 or dt.timestamp() == 0:
        return ""
    return dt.astimezone(UTC).strftime("%Y/%m/%d %H:%M UTC")


def _utc_minutes(text: str) -> str | None:
    """``YYYY/MM/DD HH:MM UTC`` straight from the characters of a UTC RFC 3339
    time (what cove and LXD send: ``...Z`` or ``+00:00``), None for any other
    form. ``cove list`` shows one per instance: parsing each with datetime
    was most of the CLI's own time with a thousand listed."""
    if len(text) < 20 or text[4] != "-" or text[7] != "-" or text[10] not in "Tt" \
            or text[13] != ":" or text[16] != ":":
        return None
    if text.endswith(("Z", "z")):
        rest = text[19:-1]
    elif text.endswith("+00:00"):
        rest = text[19:-6]
    else:
        return None
    if rest and not (rest[0] == "." and rest[1:].isdigit()):
        return None
    y, mo, d, h, mi = text[0:4], text[5:7], text[8:10], text[11:13], text[14:16]
    if not (y + mo + d + h + mi + text[17:19]).isdigit() or not ("01" <= mo <= "12") \
            or not ("01" <= d <= "31") or h > "23" or mi > "59":
        return None
    if y <= "0001" or text.startswith("1970-01-01T00:00:00"):
        return ""  # Go's zero time and the epoch: "never"
    return f"{y}/{mo}/{d} {h}:{mi} UTC"


def _parse_rfc3339(text: str) -> Any:
    from datetime import UTC, datetime

    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # Go writes up to nine fraction digits; Python takes at most six.
    if "." in s:
        head, _, rest = s.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        s = head + ("." + digits[:6] if digits else "") + rest
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


def _scaled(n: float, base: int, units: Sequence[str]) -> str:
    if n < base:
        return f"{int(n)}{units[0]}"
    for unit in units[1:]:
        n /= base
        if n < base or unit == units[-1]:
            return f"{n:.2f}{unit}"
    return f"{n:.2f}{units[-1]}"  # pragma: no cover - loop always returns


def bytes_iec(n: Any) -> str:
    """``1.50MiB`` (powers of 1024), as lxc shows memory and image sizes."""
    return _scaled(float(n or 0), 1024, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"))


def bytes_si(n: Any) -> str:
    """``1.23kB`` (powers of 1000), as lxc shows network counters."""
    return _scaled(float(n or 0), 1000, ("B", "kB", "MB", "GB", "TB", "PB"))
