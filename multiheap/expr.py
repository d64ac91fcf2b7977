"""Address arguments read without the debugger's expression evaluator.

Some hosts (lldb) have no evaluator that is guaranteed not to touch the target: lldb
maps memory into the process for its expression results and writes there.  This
module reads the C subset an address needs and nothing more::

    123  0x7f..  0b101  -1        numbers (C's octal too: 010 is 8)
    name  ns::name  $reg          variables and symbols, registers
    x.f  p->f  a[i]  &x  *p       members, elements, address-of, dereference
    (type *)x  (unsigned long)x   casts
    + - * / % << >> & | ^ ~       arithmetic (C pointer rules: p+1 on long* is +8)

Leaves are resolved by the host through :class:`Resolver` (read-only look-ups only).
Anything else is refused before a single leaf is looked up, with one line saying why:
assignments and ``++``/``--`` (they would write), function calls (they would run code
in the target), commas, comparisons.  The engine never imports a debugger module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from multiheap.errors import UsageError

__all__ = ["ExprError", "Resolver", "evaluate", "parse", "tokenize"]


class ExprError(UsageError):
    """An argument that is not evaluated: the message says why (one line)."""


class _Refused(ExprError):
    """Refused for what it would do (write, call), not for how it is written."""


class Resolver(Protocol):
    """What a host supplies: read-only look-ups of typed values it represents its own
    way (``Any`` below).  Each method raises :class:`ExprError` with the reason when it
    cannot answer."""

    pointer_size: int

    def variable(self, name: str) -> Any:
        """A variable (or a symbol) by name, as a typed value."""

    def register(self, name: str) -> int:
        """A register's value (``name`` without the ``$``)."""

    def is_type(self, name: str) -> bool:
        """Whether ``name`` (``size_t``, ``struct malloc_state``) names a type."""

    def cast(self, type_name: str, stars: int, value: int) -> Any:
        """A value of type ``type_name`` followed by ``stars`` ``*``, holding ``value``."""

    def number(self, value: Any) -> tuple[int, Optional[int]]:
        """A value as a number, and its element size when it is a pointer (pointee size)
        or an array (element size; the number is then the array's address).  Structs
        raise."""

    def pointer(self, value: Any, address: int) -> Any:
        """A pointer of ``value``'s pointer type (an array's: to its element type)
        holding ``address``."""

    def deref(self, pointer: Any) -> Any:
        """The object a pointer (made by :meth:`pointer` or read) points to."""

    def address_of(self, value: Any) -> Any:
        """A pointer to ``value``, which must live in memory."""

    def member(self, value: Any, name: str) -> Any:
        """Member ``name`` of a struct or union value."""


# --- tokens ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    """One lexical unit: kind is num, name, reg, op or end."""

    kind: str
    text: str
    pos: int
    value: int = 0


_WRITES = {"=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=", "++", "--"}
_OPS = sorted(_WRITES | {"->", "<<", ">>", "==", "!=", "<=", ">=", "&&", "||", "+", "-", "*",
                         "/", "%", "&", "|", "^", "~", "!", "(", ")", "[", "]", ".", ",",
                         "<", ">", "?", ":", "{", "}", ";"}, key=len, reverse=True)
_NAME = re.compile(r"[A-Za-z_]\w*(?:::[A-Za-z_]\w*)*")
_REG = re.compile(r"\$[A-Za-z_]\w*")
_NUM = re.compile(r"(0[xX][0-9a-fA-F]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)[uUlL]*(?![\w.])")
_MAX_DEPTH = 100


def _show(text: str, limit: int = 40) -> str:
    r = repr(text)
    return r if len(r) <= limit else r[:limit - 4] + "...'"


def tokenize(text: str) -> list[Token]:
    """``text`` as tokens (ending with an ``end`` token); raises :class:`ExprError`."""
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c.isdigit():
            m = _NUM.match(text, i)
            if not m:
                bad = re.match(r"[\w.]+", text[i:])
                raise ExprError(f"bad number {_show(bad.group() if bad else c)}")
            digits = m.group(1)
            if digits[:2] in ("0x", "0X", "0b", "0B"):
                value = int(digits, 0)
            else:
                value = int(digits, 8) if digits.startswith("0") and len(digits) > 1 \
                    else int(digits)
            if value >= 1 << 64:
                raise ExprError(f"{_show(m.group())} does not fit in 64 bits")
            out.append(Token("num", m.group(), i, value))
            i = m.end()
            continue
        m = _NAME.match(text, i) or _REG.match(text, i)
        if m:
            out.append(Token("reg" if c == "$" else "name", m.group(), i))
            i = m.end()
            continue
        if c in "'\"":
            raise ExprError("character and string literals are not addresses")
        if c == "$":
            raise ExprError(f"{_show(text[i:i + 12])} is not a register name")
        for op in _OPS:
            if text.startswith(op, i):
                out.append(Token("op", op, i))
                i += len(op)
                break
        else:
            raise ExprError(f"unexpected character {c!r}")
    out.append(Token("end", "", n))
    return out


# --- parser ---------------------------------------------------------------------------
# Nodes are tuples: ("num", n) ("name", s) ("reg", s) ("unary", op, x) ("binary", op, a, b)
# ("cast", type_name, stars, x) ("index", a, i) ("member", x, name) ("arrow", x, name)
Node = tuple

_TYPE_WORDS = {"void", "char", "short", "int", "long", "float", "double", "signed",
               "unsigned", "_Bool", "bool", "struct", "union", "enum", "class"}
_QUALIFIERS = {"const", "volatile", "restrict"}
_BINARY = [("|",), ("^",), ("&",), ("<<", ">>"), ("+", "-"), ("*", "/", "%")]
_UNSUPPORTED = {"==": "comparisons", "!=": "comparisons", "<": "comparisons",
                ">": "comparisons", "<=": "comparisons", ">=": "comparisons",
                "&&": "logical operators", "||": "logical operators", "!": "logical operators",
                "?": "conditional expressions", ":": "conditional expressions",
                "{": "braces", "}": "braces", ";": "statements"}
_KEYWORDS = {"sizeof", "alignof", "_Alignof", "new", "delete", "this", "typeof",
             "__typeof__", "static_cast", "reinterpret_cast", "dynamic_cast",
             "const_cast"}


class _Parser:
    def __init__(self, tokens: list[Token], is_type) -> None:
        self.t = tokens
        self.i = 0
        self.is_type = is_type
        self.depth = 0

    def peek(self, k: int = 0) -> Token:
        return self.t[min(self.i + k, len(self.t) - 1)]

    def take(self) -> Token:
        tok = self.t[self.i]
        self.i += 1
        return tok

    def is_op(self, *ops: str, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok.kind == "op" and tok.text in ops

    def expect(self, op: str) -> None:
        if not self.is_op(op):
            raise ExprError(self._unexpected(f"'{op}' expected"))
        self.take()

    def _unexpected(self, what: str) -> str:
        tok = self.peek()
        if tok.kind == "end":
            return f"incomplete expression ({what})"
        if tok.kind == "op" and tok.text in _UNSUPPORTED:
            return f"{_UNSUPPORTED[tok.text]} are not supported in an address"
        if tok.kind == "op" and tok.text == ",":
            return "commas are not evaluated (one address per argument)"
        return f"unexpected {_show(tok.text)} ({what})"

    def whole(self) -> Node:
        node = self.binary(0)
        if self.peek().kind != "end":
            raise ExprError(self._unexpected("an operator or the end expected"))
        return node

    def binary(self, level: int) -> Node:
        if level == len(_BINARY):
            return self.unary()
        node = self.binary(level + 1)
        while self.is_op(*_BINARY[level]):
            op = self.take().text
            node = ("binary", op, node, self.binary(level + 1))
        return node

    def unary(self) -> Node:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise ExprError("too deeply nested")
        try:
            if self.is_op("&", "*", "-", "+", "~"):
                op = self.take().text
                return ("unary", op, self.unary())
            cast = self.cast_type()
            if cast is not None:
                return ("cast", cast[0], cast[1], self.unary())
            return self.postfix(self.primary())
        finally:
            self.depth -= 1

    def cast_type(self) -> Optional[tuple[str, int]]:
        """``(type *)`` at this point: (type name, stars), consumed; else None."""
        if not self.is_op("("):
            return None
        k, words = 1, []
        while self.peek(k).kind == "name":
            words.append(self.peek(k).text)
            k += 1
        stars = 0
        while self.is_op("*", k=k):
            stars += 1
            k += 1
        if not words or not self.is_op(")", k=k):
            return None
        name = " ".join(w for w in words if w not in _QUALIFIERS)
        if not name:
            return None
        keyword = any(w in _TYPE_WORDS or w in _QUALIFIERS for w in words)
        if not keyword and (len(words) > 1 or not self.is_type(name)):
            return None
        self.i += k + 1
        return name, stars

    def primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "num":
            self.take()
            return ("num", tok.value)
        if tok.kind == "reg":
            self.take()
            return ("reg", tok.text[1:])
        if tok.kind == "name":
            if tok.text in _KEYWORDS:
                raise ExprError(f"{tok.text} is not supported in an address")
            if tok.text in _TYPE_WORDS | _QUALIFIERS:
                raise ExprError(f"unexpected {_show(tok.text)} (a type name outside a cast)")
            self.take()
            return ("name", tok.text)
        if self.is_op("("):
            self.take()
            node = self.binary(0)
            self.expect(")")
            return node
        raise ExprError(self._unexpected("a number, a name or a register expected"))

    def postfix(self, node: Node) -> Node:
        while True:
            if self.is_op("("):
                raise _Refused("function calls are not allowed "
                               "(multiheap never runs code in the target)")
            if self.is_op("["):
                self.take()
                index = self.binary(0)
                self.expect("]")
                node = ("index", node, index)
            elif self.is_op(".", "->"):
                op = self.take().text
                if self.peek().kind != "name":
                    raise ExprError(self._unexpected(f"a member name after '{op}' expected"))
                node = ("member" if op == "." else "arrow", node, self.take().text)
            else:
                return node


def parse(text: str, is_type=lambda name: False) -> Node:
    """``text`` as a tree; raises :class:`ExprError` (nothing is looked up but types)."""
    tokens = tokenize(text)
    for tok in tokens:
        if tok.kind == "op" and tok.text in _WRITES:
            raise _Refused("would write to the target (multiheap only reads)")
    if len(tokens) == 1:
        raise ExprError("empty expression")
    return _Parser(tokens, is_type).whole()


# --- evaluation -----------------------------------------------------------------------
@dataclass
class _Val:
    num: int = 0
    host: Any = None  # a host's typed value; None: a plain number


class _Evaluator:
    def __init__(self, res: Resolver) -> None:
        self.res = res
        self.mask = (1 << (8 * res.pointer_size)) - 1

    def number(self, v: _Val) -> tuple[int, Optional[int]]:
        return (v.num, None) if v.host is None else self.res.number(v.host)

    def integer(self, v: _Val, op: str) -> int:
        n, step = self.number(v)
        if step is not None:
            raise ExprError(f"'{op}' takes numbers, not pointers (cast to long first)")
        return n

    def pointer_to(self, v: _Val, what: str) -> Any:
        """``v`` as a host pointer (arrays decay), for ``*``, ``[]`` and ``->``."""
        if v.host is None:
            raise ExprError(f"{what} a plain number: cast it first, as in *(long *)ADDR")
        n, step = self.res.number(v.host)
        if step is None:
            raise ExprError(f"{what} something that is not a pointer")
        return self.res.pointer(v.host, n)

    def eval(self, node: Node) -> _Val:
        kind = node[0]
        if kind == "num":
            return _Val(node[1])
        if kind == "reg":
            return _Val(self.res.register(node[1]))
        if kind == "name":
            return _Val(host=self.res.variable(node[1]))
        if kind == "cast":
            n, _ = self.number(self.eval(node[3]))
            return _Val(host=self.res.cast(node[1], node[2], n & self.mask))
        if kind == "member":
            v = self.eval(node[1])
            if v.host is None:
                raise ExprError(f"'.{node[2]}' on a plain number")
            return _Val(host=self.res.member(v.host, node[2]))
        if kind == "arrow":
            p = self.pointer_to(self.eval(node[1]), f"'->{node[2]}' on")
            return _Val(host=self.res.member(self.res.deref(p), node[2]))
        if kind == "index":
            p = self.add("+", self.eval(node[1]), self.eval(node[2]))
            return _Val(host=self.res.deref(self.pointer_to(p, "indexing")))
        if kind == "unary":
            return self.unary(node[1], self.eval(node[2]))
        return self.add(node[1], self.eval(node[2]), self.eval(node[3])) \
            if node[1] in "+-" else _Val(self.arith(node[1], self.eval(node[2]),
                                                     self.eval(node[3])))

    def unary(self, op: str, v: _Val) -> _Val:
        if op == "&":
            if v.host is None:
                raise ExprError("'&' needs something in memory, not a number")
            return _Val(host=self.res.address_of(v.host))
        if op == "*":
            return _Val(host=self.res.deref(self.pointer_to(v, "dereferencing")))
        n = self.integer(v, op)
        return _Val({"-": -n, "+": n, "~": ~n}[op])

    def add(self, op: str, a: _Val, b: _Val) -> _Val:
        (na, sa), (nb, sb) = self.number(a), self.number(b)
        if sa is not None and sb is not None:
            if op == "+":
                raise ExprError("cannot add two pointers")
            return _Val(_cdiv(na - nb, sa or 1))
        if sa is not None:
            return _Val(host=self.res.pointer(a.host, (na + (nb if op == "+" else -nb) * sa)
                                              & self.mask))
        if sb is not None:
            if op == "-":
                raise ExprError("cannot subtract a pointer from a number")
            return _Val(host=self.res.pointer(b.host, (nb + na * sb) & self.mask))
        return _Val(na + nb if op == "+" else na - nb)

    def arith(self, op: str, a: _Val, b: _Val) -> int:
        x, y = self.integer(a, op), self.integer(b, op)
        if op in "/%" and y == 0:
            raise ExprError("division by zero")
        if op in ("<<", ">>") and not 0 <= y < 8 * 8:
            raise ExprError(f"shift count {y} out of range")
        if op == "/":
            return _cdiv(x, y)
        if op == "%":
            return x - y * _cdiv(x, y)
        if op == "*":
            return x * y
        if op == "<<":
            return x << y
        if op == ">>":
            return x >> y
        return x & y if op == "&" else x | y if op == "|" else x ^ y


def _cdiv(x: int, y: int) -> int:
    """C's division: truncates toward zero."""
    q = abs(x) // abs(y)
    return q if (x < 0) == (y < 0) else -q


def evaluate(text: str, res: Resolver) -> int:
    """``text`` as an address (masked to the pointer size: ``-1`` is all ones).

    Raises :class:`ExprError` with one line naming the argument and why; a refused
    argument is refused before anything in it is looked up.
    """
    try:
        tree = parse(text, res.is_type)
        ev = _Evaluator(res)
        v = ev.eval(tree)
        n, _ = ev.number(v)
    except _Refused as e:
        sep = " " if str(e).startswith("would") else ": "
        raise ExprError(f"{_show(text, 60)}{sep}{e}") from None
    except ExprError as e:
        why = str(e) if len(str(e)) <= 100 else str(e)[:97] + "..."
        raise ExprError(f"cannot evaluate {_show(text, 60)}: {why}") from None
    except RecursionError:
        raise ExprError(f"cannot evaluate {_show(text, 60)}: too deeply nested") from None
    return n & ev.mask
