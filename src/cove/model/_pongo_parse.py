"""Lexing and expression parsing for :mod:`cove.model.pongo` (pure).

A template is cut into chunks (text, ``{{ expr }}``, ``{% tag %}``; comments
dropped, ``{{-``/``-}}`` trimming applied) and each expression is parsed
into a small tree of tuples by recursive descent, nested at most
:data:`MAX_DEPTH` deep. Errors are raised through the ``fail`` callback the
renderer passes, so they name its template and line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_DEPTH", "Expr", "Parser", "chunks", "for_header", "tokens"]

MAX_DEPTH = 64

# -- lexing -------------------------------------------------------------------------------
_OPEN = re.compile(r"\{([{%#])(-?)")
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>\d+\.\d+|\d+)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>==|!=|<>|<=|>=|&&|\|\||[-+*/%<>!|:.,()\[\]])
    )""", re.VERBOSE | re.DOTALL)
_FOR = re.compile(r"\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)?)\s+in\s+(.+?)"
                  r"((?:\s+(?:reversed|sorted))*)\s*", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


class Chunk:
    """A piece of the template: text, ``{{ expr }}`` or ``{% tag %}``."""

    __slots__ = ("body", "kind", "line")

    def __init__(self, kind: str, body: str, line: int) -> None:
        self.kind = kind
        self.body = body
        self.line = line


def chunks(src: str, fail: Callable[[str, int], Exception]) -> list[Chunk]:
    """The template cut into text, ``var`` and ``tag`` chunks, with their lines."""
    out: list[Chunk] = []
    pos, line, trim_next = 0, 1, False
    closers = {"{": "}}", "%": "%}", "#": "#}"}
    while True:
        m = _OPEN.search(src, pos)
        text = src[pos:m.start()] if m else src[pos:]
        if trim_next:
            text = text.lstrip()
        if m and m.group(2):
            text = text.rstrip()
        if text:
            out.append(Chunk("text", text, line))
        if not m:
            return out
        line += src.count("\n", pos, m.start())
        end = src.find(closers[m.group(1)], m.end())
        if end < 0:
            raise fail(f"unclosed {{{m.group(1)}", line)
        body = src[m.end():end]
        trim_next = body.endswith("-")
        if trim_next:
            body = body[:-1]
        if m.group(1) != "#":
            out.append(Chunk("var" if m.group(1) == "{" else "tag", body.strip(), line))
        line += src.count("\n", m.start(), end)
        pos = end + 2


def tokens(text: str, fail: Callable[[str], Exception]) -> list[tuple[str, str]]:
    """The tokens of one expression: (kind, text) with kind num, str, name or op."""
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise fail(f"unexpected {text[pos:].strip()[:20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _unquote(lit: str) -> str:
    body, out, i = lit[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# -- expressions --------------------------------------------------------------------------
# An expression is a small tree of tuples: ("lit", v), ("var", name),
# ("get", obj, key), ("call", fn, args), ("filter", name, value, arg|None),
# ("not", x), ("neg", x), ("bin", op, a, b).
Expr = tuple[Any, ...]
_CMP = ("==", "!=", "<>", "<", ">", "<=", ">=")


class Parser:
    """Recursive descent over one expression's tokens (pongo2's precedence:
    or, and, not, comparisons and ``in``, + -, * / %, unary -, filters,
    then ``.key``, ``[expr]`` and calls)."""

    def __init__(self, tokens: list[tuple[str, str]], fail: Callable[[str], Exception]) -> None:
        self.toks = tokens
        self.i = 0
        self.fail = fail
        self.depth = 0

    def peek(self, *values: str) -> bool:
        if self.i >= len(self.toks):
            return False
        kind, value = self.toks[self.i]
        return kind in ("op", "name") and value in values

    def take(self, *values: str) -> str:
        if not self.peek(*values):
            got = self.toks[self.i][1] if self.i < len(self.toks) else "the end"
            raise self.fail(f"expected {' or '.join(values)}, got {got!r}")
        self.i += 1
        return self.toks[self.i - 1][1]

    def name(self) -> str:
        if self.i >= len(self.toks) or self.toks[self.i][0] != "name":
            raise self.fail("expected a name")
        self.i += 1
        return self.toks[self.i - 1][1]

    def done(self) -> None:
        if self.i != len(self.toks):
            raise self.fail(f"unexpected {self.toks[self.i][1]!r}")

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail("expression nested too deeply")
        try:
            left = self.conj()
            while self.peek("or", "||"):
                self.i += 1
                left = ("bin", "or", left, self.conj())
            return left
        finally:
            self.depth -= 1

    def conj(self) -> Expr:
        left = self.neg()
        while self.peek("and", "&&"):
            self.i += 1
            left = ("bin", "and", left, self.neg())
        return left

    def neg(self) -> Expr:
        if self.peek("not", "!"):
            self.i += 1
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail("expression nested too deeply")
            try:
                return ("not", self.neg())
            finally:
                self.depth -= 1
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.sum()
        if self.peek(*_CMP, "in"):
            op = self.take(*_CMP, "in")
            return ("bin", "!=" if op == "<>" else op, left, self.sum())
        if self.peek("not") and self.i + 1 < len(self.toks) and self.toks[self.i + 1] == \
                ("name", "in"):
            self.i += 2
            return ("not", ("bin", "in", left, self.sum()))
        return left

    def sum(self) -> Expr:
        left = self.product()
        while self.peek("+", "-"):
            op = self.take("+", "-")
            left = ("bin", op, left, self.product())
        return left

    def product(self) -> Expr:
        left = self.unary()
        while self.peek("*", "/", "%"):
            op = self.take("*", "/", "%")
            left = ("bin", op, left, self.unary())
        return left

    def unary(self) -> Expr:
        if self.peek("-", "+"):
            sign = self.take("-", "+")
            operand = self.unary()
            return ("neg", operand) if sign == "-" else operand
        value = self.postfix()
        while self.peek("|"):
            self.i += 1
            fname = self.name()
            arg = None
            if self.peek(":"):
                self.i += 1
                arg = self.postfix()
            value = ("filter", fname, value, arg)
        return value

    def postfix(self) -> Expr:
        value = self.atom()
        while self.peek(".", "[", "("):
            op = self.take(".", "[", "(")
            if op == ".":
                if self.i < len(self.toks) and self.toks[self.i][0] == "num" and \
                        self.toks[self.i][1].isdigit():
                    self.i += 1
                    value = ("get", value, ("lit", int(self.toks[self.i - 1][1])))
                else:
                    value = ("get", value, ("lit", self.name()))
            elif op == "[":
                value = ("get", value, self.expr())
                self.take("]")
            else:
                args: list[Expr] = []
                while not self.peek(")"):
                    args.append(self.expr())
                    if not self.peek(")"):
                        self.take(",")
                self.take(")")
                value = ("call", value, tuple(args))
        return value

    def atom(self) -> Expr:
        if self.i >= len(self.toks):
            raise self.fail("expected a value, got the end")
        kind, value = self.toks[self.i]
        self.i += 1
        if kind == "num":
            return ("lit", float(value) if "." in value else int(value))
        if kind == "str":
            return ("lit", _unquote(value))
        if kind == "name":
            if value in ("true", "True", "false", "False"):
                return ("lit", value in ("true", "True"))
            if value in ("and", "or", "not", "in"):
                raise self.fail(f"unexpected {value!r}")
            return ("var", value)
        if value == "(":
            inner = self.expr()
            self.take(")")
            return inner
        raise self.fail(f"unexpected {value!r}")


def for_header(spec: str) -> tuple[list[str], str, set[str]] | None:
    """``{% for a, b in EXPR reversed %}``'s loop names, expression source
    and options (``reversed``, ``sorted``); None if it does not parse."""
    m = _FOR.fullmatch(spec)
    if not m:
        return None
    return [n.strip() for n in m.group(1).split(",")], m.group(2), set(m.group(3).split())
