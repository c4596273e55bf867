"""The text layer of a Compose file (pure): YAML with the line of every key,
``${VAR}`` interpolation and ``.env`` files, as the Compose Specification
says.

Design note: PyYAML's composer gives nodes with marks; they are turned into
plain values here, with a side table from each value's path (``("services",
"web", "image")``) to its 1-based line, so the loader can name the line of
a key it refuses without carrying nodes around. Interpolation runs on the
plain values (strings only, never keys), after the YAML is read, as Compose
does. PyYAML is imported only when a file is read: the ``cove`` command's
other paths never pay for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cove.model.errors import BadRequest

__all__ = ["Lines", "interpolate", "load_yaml", "parse_dotenv", "where"]

Path = tuple[str | int, ...]
Lines = dict[Path, int]

_VAR = re.compile(r"\$(?:(\$)|\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", re.DOTALL)


def where(path: Path, lines: Mapping[Path, int] | None = None) -> str:
    """``services.web.image (line 7)``: a path as the user wrote it."""
    text = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
    line = (lines or {}).get(path)
    return f"{text} (line {line})" if line else text


def load_yaml(text: str, source: str = "compose file") -> tuple[Any, Lines]:
    """The document in ``text`` and the line of each key and list item.

    Anchors and aliases work as YAML says; ``<<`` merge keys are merged.

    Raises:
        BadRequest: not YAML, or several documents, naming ``source`` and
            the line of the fault.
    """
    import yaml

    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise BadRequest(f"Invalid YAML in {source}{at}: {problem}") from None
    finally:
        loader.dispose()
    lines: Lines = {}
    if node is None:
        return None, lines
    return _plain(node, (), lines, loader), lines


_LOADER: Any = None


def _loader_class() -> Any:
    """PyYAML's SafeLoader with YAML 1.2's scalars, as Compose (Go's yaml.v3)
    reads them: ``no``/``yes``/``on``/``off`` stay strings (``restart: no``)
    and ``5432:22`` is no base-60 number (``ports: [5432:22]``)."""
    global _LOADER  # noqa: PLW0603 - built once, on the first file read
    if _LOADER is None:
        import yaml

        bool_tag, int_tag, float_tag = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int",
                                                                          "float"))

        class Loader(yaml.SafeLoader):  # type: ignore[misc]  # (no stubs for PyYAML)
            pass

        Loader.yaml_implicit_resolvers = {
            k: [(tag, rx) for tag, rx in v if tag not in (bool_tag, int_tag, float_tag)]
            for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
        Loader.add_implicit_resolver(bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                     list("tTfF"))
        Loader.add_implicit_resolver(int_tag, re.compile(
            r"^(?:[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
        Loader.add_implicit_resolver(float_tag, re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
        _LOADER = Loader
    return _LOADER


def _plain(node: Any, path: Path, lines: Lines, loader: Any) -> Any:
    import yaml

    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        merged: list[Any] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged += value_node.value if isinstance(value_node, yaml.SequenceNode) \
                    else [value_node]
                continue
            key = loader.construct_object(key_node)
            if isinstance(key, bool) or not isinstance(key, (str, int, float)):
                raise BadRequest(f"{where(path, lines)}: the key at line "
                                 f"{key_node.start_mark.line + 1} is not a string")
            key = str(key)
            if key in out:
                raise BadRequest(f"{where((*path, key))} (line {key_node.start_mark.line + 1}): "
                                 "the key is given twice")
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _plain(value_node, (*path, key), lines, loader)
        for m in merged:
            extra = _plain(m, path, lines, loader)
            if not isinstance(extra, dict):
                raise BadRequest(f"{where(path, lines)}: '<<' merges a mapping only")
            for k, v in extra.items():
                out.setdefault(k, v)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_plain(item, (*path, i), lines, loader))
        return items
    return loader.construct_object(node)


def interpolate(value: Any, env: Mapping[str, str], path: Path = (),
                lines: Mapping[Path, int] | None = None) -> Any:
    """``value`` with ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``, ``${VAR+alt}`` replaced
    in every string (keys are left as they are) and ``$$`` read as ``$``.
    A variable that is not set is the empty string, as Compose (which warns).

    Raises:
        BadRequest: a ``?`` form whose variable is unset (or empty, ``:?``),
            or a malformed ``${...}``, naming the path and line.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, env, (*path, k), lines) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, (*path, i), lines) for i, v in enumerate(value)]
    if isinstance(value, str) and "$" in value:
        return _substitute(value, env, path, lines)
    return value


def _substitute(text: str, env: Mapping[str, str], path: Path,
                lines: Mapping[Path, int] | None) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        if m.group(3):
            return env.get(m.group(3), "")
        inner = _BRACED.match(m.group(2))
        if inner is None:
            raise BadRequest(f"{where(path, lines)}: invalid interpolation {m.group(0)!r}")
        name, op, arg = inner.group(1), inner.group(2), inner.group(3) or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op is None:
            return value or ""
        if op.endswith("-"):
            return _substitute(arg, env, path, lines) if unset else value or ""
        if op.endswith("+"):
            return "" if unset else _substitute(arg, env, path, lines)
        if unset:  # ? and :?
            raise BadRequest(f"{where(path, lines)}: required variable {name} is missing a "
                             f"value: {arg or 'not set'}")
        return value or ""

    return _VAR.sub(one, text)


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(?:=\s*(.*?))?\s*$",
                       re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$$"}


def parse_dotenv(text: str, source: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of a ``.env`` or ``env_file`` file: ``KEY=VALUE`` lines,
    ``#`` comments, an optional ``export``, single quotes (literal), double
    quotes (``\\n`` escapes, interpolated) or bare values (a `` #`` starts a
    comment; interpolated). A bare ``KEY`` takes its value from ``env``
    (left out when unset). Values interpolate with ``env`` and the earlier
    lines of the file.

    Raises:
        BadRequest: a line that is none of these, naming ``source`` and the line.
    """
    out: dict[str, str] = {}
    scope: dict[str, str] = dict(env or {})
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if m is None:
            raise BadRequest(f"{source} line {n}: expected KEY=VALUE, got {line[:60]!r}")
        key, value = m.group(1), m.group(2)
        if value is None:
            if key in scope:
                out[key] = scope[key]
            continue
        if value[:1] == "'" and value.endswith("'") and len(value) >= 2:
            parsed = value[1:-1]
        elif value[:1] == '"' and value.endswith('"') and len(value) >= 2:
            body = re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), "\\" + e.group(1)),
                          value[1:-1])
            parsed = _substitute(body, scope, (source,), None)
        else:
            parsed = _substitute(re.sub(r"\s+#.*$", "", value), scope, (source,), None)
        out[key] = scope[key] = parsed
    return out
