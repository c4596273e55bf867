"""A small, safe renderer for the pongo2 subset that LXD image templates use.

Design note: LXD renders an image's templates (``metadata.yaml``
``templates:``) with pongo2, a Django-like engine, autoescape off and the
tags that read files (``extends``, ``import``, ``include``, ``ssi``)
banned. The images of LXD's image servers use a small part of it:
``{{ instance.name }}``, ``{{ config_get("user.x", properties.default) }}``,
``{% if a == "b" %}...{% elif %}...{% else %}...{% endif %}``, the odd
``{% for %}`` and a few filters. This module renders that part the way
pongo2 does and nothing more:

* No ``eval``, no attribute access on Python objects: ``a.b`` and
  ``a["b"]`` look up a key of a mapping or an index of a list, never an
  attribute; the only callables are the ones the caller puts in the
  context (``config_get``). Nothing here opens a file.
* Everything it does not know (a tag, a filter, an operator, bad syntax)
  raises :class:`TemplateError` naming the template and the line; so does
  an output over :data:`MAX_OUTPUT` characters, more than :data:`MAX_STEPS`
  steps (nodes run and values computed), expressions nested deeper than
  :data:`MAX_DEPTH`, and any value larger than the output limit or an
  integer past int64 (a string doubled forty times, a number squared in a
  loop). A template is hostile input: it can fail, never hang or crash
  coved.
* pongo2's semantics where an image can see them: a missing variable or
  key renders as nothing and is false; maps are iterated in key order;
  ``==`` compares numbers as numbers and anything else by type and value;
  ``in`` is a substring, key or element test; booleans print ``True`` /
  ``False``; ``{{-`` / ``-}}`` (and ``{%-`` / ``-%}``) trim whitespace.
"""

from __future__ import annotations

import html
import operator
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from cove.model._pongo_parse import MAX_DEPTH, Expr, Parser, chunks, for_header, tokens
from cove.model.errors import BadRequest

__all__ = ["MAX_DEPTH", "MAX_OUTPUT", "MAX_STEPS", "TemplateError", "function", "render"]

MAX_OUTPUT = 8 << 20  # characters of output, and of any one value made on the way
MAX_STEPS = 200_000  # nodes run and expressions evaluated (well under a second)
_INT_LIMIT = 1 << 63  # pongo2's integers are Go's int64
_BANNED = ("extends", "import", "include", "ssi")
_CLOSERS = ("elif", "else", "endif", "empty", "endfor", "endautoescape", "endcomment")


class TemplateError(BadRequest):
    """A template cannot be rendered; the message names it (and the line)."""


# -- values -------------------------------------------------------------------------------
def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def truth(v: object) -> bool:
    """pongo2's ``IsTrue``: empty strings, zero, empty maps and lists, nothing: false."""
    if v is None:
        return False
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    if isinstance(v, (bool, int, float)):
        return bool(v)
    return True


def text(v: object) -> str:
    """A value as pongo2 prints it."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{text(k)}:{text(v[k])}" for k in sorted(v, key=str)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(text(x) for x in v) + "]"
    return ""  # a function: pongo2 prints nothing useful either


def _capped(v: object) -> object:
    """``v``, unless it is too large to be a value of a template."""
    if isinstance(v, (str, list, tuple)) and len(v) > MAX_OUTPUT:
        raise ValueError(f"a value larger than {MAX_OUTPUT} characters")
    if isinstance(v, int) and not -_INT_LIMIT <= v < _INT_LIMIT:
        raise ValueError("integer overflow")
    return v


def _equal(a: object, b: object) -> bool:
    if _is_num(a) and _is_num(b):
        return a == b
    return type(a) is type(b) and a == b


def _lookup(obj: object, key: object) -> object:
    if isinstance(obj, Mapping):
        return obj.get(key) if isinstance(key, (str, int)) else None
    if isinstance(obj, (list, tuple, str)) and isinstance(key, int) and not isinstance(key, bool):
        return obj[key] if -len(obj) <= key < len(obj) else None
    return None


def _contains(container: object, item: object) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, Mapping):
        return isinstance(item, (str, int)) and item in container
    if isinstance(container, (list, tuple)):
        return any(_equal(x, item) for x in container)
    return False


def _yesno(v: object, arg: object) -> str:
    choices = (text(arg) if arg is not None else "yes,no,maybe").split(",")
    if len(choices) not in (2, 3):
        raise ValueError("yesno wants 2 or 3 comma-separated choices")
    if v is None and len(choices) == 3:
        return choices[2]
    return choices[0] if truth(v) else choices[1]


def _integer(v: object) -> int:
    try:
        return int(float(v)) if isinstance(v, (str, int, float)) else 0
    except ValueError:
        return 0


def _number(v: object) -> float:
    try:
        return float(v) if isinstance(v, (str, int, float)) else 0.0
    except ValueError:
        return 0.0


def _add(v: object, arg: object) -> object:
    if _is_num(v) and _is_num(arg):
        return v + arg  # type: ignore[operator]
    return text(v) + text(arg)


def _capfirst(v: object) -> str:
    s = text(v)
    return s[:1].upper() + s[1:]


def _truncate(v: object, arg: object) -> str:
    s, n = text(v), _integer(arg)
    return s if len(s) <= n else (s[:n - 3] + "..." if n > 3 else s[:n])


def _first(v: object) -> object:
    return v[0] if isinstance(v, (str, list, tuple)) and v else None


def _last(v: object) -> object:
    return v[-1] if isinstance(v, (str, list, tuple)) and v else None


def _length(v: object) -> int:
    return len(v) if isinstance(v, (str, list, tuple, dict)) else 0


def _join(v: object, arg: object) -> object:
    if not isinstance(v, (list, tuple)):
        return v
    sep, parts = text(arg), [text(x) for x in v]
    if len(sep) * len(parts) + sum(len(p) for p in parts) > MAX_OUTPUT:
        raise ValueError(f"a value larger than {MAX_OUTPUT} characters")
    return sep.join(parts)


# filter name -> (function of value and argument, whether the argument is required)
_FILTERS: dict[str, tuple[Callable[[object, object], object], bool]] = {
    "default": (lambda v, a: v if truth(v) else a, True),
    "default_if_none": (lambda v, a: a if v is None else v, True),
    "lower": (lambda v, _a: text(v).lower(), False),
    "upper": (lambda v, _a: text(v).upper(), False),
    "title": (lambda v, _a: text(v).title(), False),
    "capfirst": (lambda v, _a: _capfirst(v), False),
    "length": (lambda v, _a: _length(v), False),
    "length_is": (lambda v, a: _length(v) == _integer(a), True),
    "join": (_join, True),
    "first": (lambda v, _a: _first(v), False),
    "last": (lambda v, _a: _last(v), False),
    "cut": (lambda v, a: text(v).replace(text(a), ""), True),
    "add": (_add, True),
    "safe": (lambda v, _a: v, False),
    "escape": (lambda v, _a: html.escape(text(v)), False),
    "e": (lambda v, _a: html.escape(text(v)), False),
    "integer": (lambda v, _a: _integer(v), False),
    "float": (lambda v, _a: _number(v), False),
    "yesno": (_yesno, False),
    "split": (lambda v, a: text(v).split(text(a)) if text(a) else list(text(v)), True),
    "make_list": (lambda v, _a: list(text(v)), False),
    "addslashes": (lambda v, _a: text(v).replace("\\", "\\\\").replace('"', '\\"')
                   .replace("'", "\\'"), False),
    "urlencode": (lambda v, _a: urllib.parse.quote(text(v), safe="/"), False),
    "truncatechars": (_truncate, True),
    "wordcount": (lambda v, _a: len(text(v).split()), False),
    "striptags": (lambda v, _a: re.sub(r"<[^>]*>", "", text(v)), False),
}


def _num(v: object, op: str) -> int | float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{op} wants numbers" + (" or two strings" if op == "+" else ""))
    return v


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "%": operator.mod}


def _arith(op: str, a: object, b: object) -> object:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    x, y = _num(a, op), _num(b, op)
    if op in ("/", "%") and y == 0:
        raise ValueError("division by zero")
    if op != "/":
        return _ARITH[op](x, y)
    if isinstance(x, int) and isinstance(y, int):  # Go's integer division truncates
        q = abs(x) // abs(y)
        return q if (x >= 0) == (y >= 0) else -q
    return x / y


def _order(op: str, a: object, b: object) -> bool:
    if _is_num(a) and _is_num(b):
        x, y = float(a), float(b)  # type: ignore[arg-type]
    elif isinstance(a, str) and isinstance(b, str):
        x, y = a, b  # type: ignore[assignment]
    else:
        raise ValueError(f"{op} compares two numbers or two strings")
    return {"<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y}[op]


# -- rendering ----------------------------------------------------------------------------
class _Node:
    __slots__ = ("args", "kind", "line")

    def __init__(self, kind: str, line: int, *args: Any) -> None:
        self.kind = kind
        self.line = line
        self.args = args


class _Template:
    def __init__(self, name: str, src: str) -> None:
        self.name = name
        self.line = 1
        self.tag_rest = ""  # what followed the closing tag _block stopped at
        self.steps = 0
        self.chunks = chunks(src, self._fail_at)
        self.pos = 0
        self.body, end = self._block(())
        if end is not None:
            raise self._fail_at(f"unexpected {{% {end} %}}", self.line)
        self.out: list[str] = []
        self.size = 0

    def _fail_at(self, msg: str, line: int) -> TemplateError:
        return TemplateError(f"template {self.name}, line {line}: {msg}")

    def _fail(self, msg: str) -> TemplateError:
        return self._fail_at(msg, self.line)

    def _parse_expr(self, src: str) -> Expr:
        p = Parser(tokens(src, self._fail), self._fail)
        e = p.expr()
        p.done()
        return e

    # -- parsing blocks
    def _block(self, ends: tuple[str, ...]) -> tuple[list[_Node], str | None]:
        """Nodes up to one of the tags ``ends`` (returned with its body), or the end."""
        nodes: list[_Node] = []
        while self.pos < len(self.chunks):
            c = self.chunks[self.pos]
            self.pos += 1
            self.line = c.line
            if c.kind == "text":
                nodes.append(_Node("text", c.line, c.body))
            elif c.kind == "var":
                if not c.body:
                    raise self._fail("empty {{ }}")
                nodes.append(_Node("out", c.line, self._parse_expr(c.body)))
            else:
                words = c.body.split(None, 1)
                tag = words[0] if words else ""
                rest = words[1].strip() if len(words) > 1 else ""
                if tag in ends:
                    self.tag_rest = rest
                    return nodes, tag
                nodes.append(self._tag(tag, rest))
        if ends:
            raise self._fail(f"missing {{% {ends[-1]} %}}")
        return nodes, None

    def _tag(self, tag: str, rest: str) -> _Node:
        line = self.line
        if tag == "if":
            return self._if(rest, line)
        if tag == "for":
            return self._for(rest, line)
        if tag == "autoescape":
            body, _ = self._block(("endautoescape",))
            return _Node("seq", line, body)
        if tag == "comment":
            self._block(("endcomment",))
            return _Node("seq", line, [])
        if tag in _CLOSERS:
            raise self._fail(f"unexpected {{% {tag} %}}")
        if tag in _BANNED:
            raise self._fail(f"tag {tag!r} is not allowed (it would read files)")
        if not tag:
            raise self._fail("empty {% %}")
        raise self._fail(f"unknown tag {tag!r}")

    def _if(self, cond: str, line: int) -> _Node:
        branches: list[tuple[Expr, list[_Node]]] = []
        otherwise: list[_Node] = []
        expr = self._parse_expr(cond)
        while True:
            body, end = self._block(("elif", "else", "endif"))
            if end == "else":
                branches.append((expr, body))
                otherwise, _ = self._block(("endif",))
                break
            branches.append((expr, body))
            if end == "endif":
                break
            expr = self._parse_expr(self.tag_rest)
        return _Node("if", line, branches, otherwise)

    def _for(self, spec: str, line: int) -> _Node:
        header = for_header(spec)
        if header is None:
            raise self._fail("for needs 'NAME[, NAME] in EXPRESSION'")
        names, source, options = header
        seq = self._parse_expr(source)
        body, end = self._block(("empty", "endfor"))
        empty: list[_Node] = []
        if end == "empty":
            empty, _ = self._block(("endfor",))
        return _Node("for", line, names, seq, body, empty, options)

    # -- running
    def run(self, ctx: dict[str, object]) -> str:
        self._run(self.body, ctx)
        return "".join(self.out)

    def _emit(self, s: str) -> None:
        self.size += len(s)
        if self.size > MAX_OUTPUT:
            raise self._fail(f"output larger than {MAX_OUTPUT} bytes")
        self.out.append(s)

    def _tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise self._fail(f"more than {MAX_STEPS} steps")

    def _run(self, nodes: list[_Node], ctx: dict[str, object]) -> None:
        for n in nodes:
            self._tick()
            self.line = n.line
            if n.kind == "text":
                self._emit(n.args[0])
            elif n.kind == "out":
                self._emit(text(self._eval(n.args[0], ctx)))
            elif n.kind == "seq":
                self._run(n.args[0], ctx)
            elif n.kind == "if":
                branches, otherwise = n.args
                chosen = next((body for cond, body in branches if truth(self._eval(cond, ctx))),
                              otherwise)
                self._run(chosen, ctx)
            else:
                self._loop(n, ctx)

    def _loop(self, n: _Node, ctx: dict[str, object]) -> None:
        names, seq, body, empty, options = n.args
        value = self._eval(seq, ctx)
        if isinstance(value, Mapping):
            items: list[Any] = [(k, value[k]) for k in sorted(value, key=text)]
        elif isinstance(value, (list, tuple, str)):
            items = list(value)
        else:
            items = []
        if "sorted" in options:
            items.sort(key=lambda x: text(x[0] if isinstance(value, Mapping) else x))
        if "reversed" in options:
            items.reverse()
        if not items:
            self._run(empty, ctx)
            return
        for i, item in enumerate(items):
            inner = dict(ctx)
            inner["forloop"] = {"Counter": i + 1, "Counter0": i, "Revcounter": len(items) - i,
                                "Revcounter0": len(items) - i - 1, "First": i == 0,
                                "Last": i == len(items) - 1}
            if len(names) == 2:
                key, val = item if isinstance(value, Mapping) else (i, item)
                inner[names[0]], inner[names[1]] = key, val
            else:
                inner[names[0]] = item[0] if isinstance(value, Mapping) else item
            self._run(body, inner)

    def _eval(self, e: Expr, ctx: Mapping[str, object]) -> object:
        try:
            return _capped(self._value(e, ctx))
        except (ValueError, TypeError, OverflowError) as exc:
            raise self._fail(str(exc)) from None

    def _value(self, e: Expr, ctx: Mapping[str, object]) -> object:
        self._tick()
        kind = e[0]
        if kind == "lit":
            return e[1]
        if kind == "var":
            return ctx.get(e[1])
        if kind == "get":
            return _lookup(self._value(e[1], ctx), self._value(e[2], ctx))
        if kind == "not":
            return not truth(self._value(e[1], ctx))
        if kind == "neg":
            v = self._value(e[1], ctx)
            if not _is_num(v):
                raise TypeError("- wants a number")
            return -v  # type: ignore[operator]
        if kind == "call":
            return _capped(self._call(e, ctx))
        if kind == "filter":
            return _capped(self._filter(e, ctx))
        return _capped(self._binary(e[1], e[2], e[3], ctx))

    def _call(self, e: Expr, ctx: Mapping[str, object]) -> object:
        fn = self._value(e[1], ctx)
        if not isinstance(fn, _Function):
            raise TypeError("only the template functions (config_get) can be called")
        return fn(*(self._value(a, ctx) for a in e[2]))

    def _filter(self, e: Expr, ctx: Mapping[str, object]) -> object:
        _, fname, value, arg = e
        if fname not in _FILTERS:
            raise ValueError(f"unknown filter {fname!r}")
        fn, needs_arg = _FILTERS[fname]
        if needs_arg and arg is None:
            raise ValueError(f"filter {fname!r} needs an argument")
        return fn(self._value(value, ctx), None if arg is None else self._value(arg, ctx))

    def _binary(self, op: str, a: Expr, b: Expr, ctx: Mapping[str, object]) -> object:
        if op == "and":
            return truth(self._value(a, ctx)) and truth(self._value(b, ctx))
        if op == "or":
            return truth(self._value(a, ctx)) or truth(self._value(b, ctx))
        x, y = self._value(a, ctx), self._value(b, ctx)
        if op == "==":
            return _equal(x, y)
        if op == "!=":
            return not _equal(x, y)
        if op == "in":
            return _contains(y, x)
        if op in ("<", ">", "<=", ">="):
            return _order(op, x, y)
        return _arith(op, x, y)


class _Function:
    """A callable the caller put in the context; the only thing a template can call."""

    def __init__(self, fn: Callable[..., object], arity: int) -> None:
        self.fn = fn
        self.arity = arity

    def __call__(self, *args: object) -> object:
        if len(args) != self.arity:
            raise ValueError(f"this function takes {self.arity} arguments, got {len(args)}")
        return self.fn(*args)


def function(fn: Callable[..., object], arity: int) -> object:
    """Wrap ``fn`` (taking ``arity`` arguments) so a template may call it."""
    return _Function(fn, arity)


def render(source: str, context: Mapping[str, object], *, name: str = "template") -> str:
    """Render ``source`` (pongo2 syntax, the subset above) with ``context``.

    ``context`` holds plain data (str, int, float, bool, None, mappings,
    lists) and functions made with :func:`function`. Pure: no I/O.

    Raises:
        TemplateError: a syntax error, an unknown tag or filter, a banned
            tag, a bad operation, or a limit passed; the message names
            ``name`` and the line.
    """
    try:
        return _Template(name, source).run(dict(context))
    except RecursionError:
        raise TemplateError(f"template {name}: nested too deeply") from None
