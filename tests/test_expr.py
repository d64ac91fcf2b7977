"""multiheap.expr, the address reader lldb uses: C semantics over a small fake memory, and
refusals that happen before anything is looked up."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Optional

import pytest

from multiheap.expr import ExprError, evaluate, parse, tokenize

MASK = (1 << 64) - 1


@dataclass
class T:
    """A C type: int, ptr, array, struct or void."""

    kind: str
    size: int = 8
    signed: bool = False
    to: Optional[T] = None
    fields: dict = field(default_factory=dict)  # name -> (offset, T)
    name: str = ""


@dataclass
class V:
    type: T
    addr: Optional[int] = None
    raw: int = 0


LONG, CHAR, VOID = T("int", 8, True, name="long"), T("int", 1, True, name="char"), \
    T("void", 0, name="void")
INT = T("int", 4, True, name="int")
LONGP = T("ptr", to=LONG)
PAIR = T("struct", 16, fields={"a": (0, LONG), "b": (8, LONGP)}, name="struct pair")


class Fake:
    """A resolver over a bytearray at 0x1000, recording every look-up."""

    pointer_size = 8

    def __init__(self) -> None:
        self.base, self.mem, self.calls = 0x1000, bytearray(0x100), []
        self.vars = {"n": V(INT, 0x1000), "arr": V(T("array", 32, to=LONG), 0x1008),
                     "ptr": V(LONGP, 0x1028), "s": V(PAIR, 0x1030),
                     "sp": V(T("ptr", to=PAIR), 0x1040)}
        self.put(0x1000, 5, 4)
        for i, x in enumerate((10, 20, 30, 40)):
            self.put(0x1008 + 8 * i, x)
        self.put(0x1028, 0x1010)
        self.put(0x1030, 7)
        self.put(0x1038, 0x1008)
        self.put(0x1040, 0x1030)

    def put(self, addr: int, value: int, size: int = 8) -> None:
        self.mem[addr - self.base:addr - self.base + size] = value.to_bytes(size, "little")

    def get(self, addr: int, size: int) -> int:
        if not self.base <= addr <= self.base + len(self.mem) - size:
            raise ExprError(f"cannot read memory at {addr:#x}")
        return int.from_bytes(self.mem[addr - self.base:addr - self.base + size], "little")

    def variable(self, name):
        self.calls.append(("variable", name))
        if name not in self.vars:
            raise ExprError(f"no variable {name}")
        return self.vars[name]

    def register(self, name):
        self.calls.append(("register", name))
        return {"rsp": 0x7FF0, "rax": MASK}[name]

    def is_type(self, name):
        self.calls.append(("is_type", name))
        return name in ("long", "char", "void", "int", "struct pair", "size_t")

    def cast(self, type_name, stars, value):
        t = {"long": LONG, "char": CHAR, "void": VOID, "int": INT, "struct pair": PAIR,
             "size_t": T("int", 8, name="size_t")}[type_name]
        for _ in range(stars):
            t = T("ptr", to=t)
        if t.kind not in ("int", "ptr"):
            raise ExprError(f"cannot cast to {type_name}")
        return V(t, raw=value & ((1 << (8 * t.size)) - 1))

    def number(self, v):
        t = v.type
        if t.kind == "array":
            return v.addr, t.to.size
        if t.kind not in ("int", "ptr"):
            raise ExprError(f"is a {t.name}")
        n = self.get(v.addr, t.size) if v.addr is not None else v.raw
        if t.kind == "int" and t.signed and n >> (8 * t.size - 1):
            n -= 1 << (8 * t.size)
        return (n, (t.to.size or 1)) if t.kind == "ptr" else (n, None)

    def pointer(self, v, address):
        return V(T("ptr", to=v.type.to), raw=address)

    def deref(self, p):
        if p.type.to.kind == "void":
            raise ExprError("void")
        return V(p.type.to, self.number(p)[0])

    def address_of(self, v):
        if v.addr is None:
            raise ExprError("not in memory")
        return V(T("ptr", to=v.type), raw=v.addr)

    def member(self, v, name):
        if name not in v.type.fields:
            raise ExprError(f"{v.type.name or v.type.kind} has no members named {name}")
        off, t = v.type.fields[name]
        return V(t, v.addr + off)


VALUES = {
    "0x10": 16, "010": 8, "0b101": 5, "10UL": 10, "-1": MASK, "-0x48": MASK - 0x47,
    "2+3*4": 14, "(2+3)*4": 20, "-7/2": MASK - 2, "-7%2": MASK, "7>>1": 3, "1<<4|1": 17,
    "~0": MASK, "0x10^0x1": 0x11, "6&3": 2, "n": 5, "n*2+1": 11, "$rsp+8": 0x7FF8,
    "$rax+1": 0,
    # pointers: scaled arithmetic, arrays decay to their address, as gdb does
    "ptr": 0x1010, "ptr+1": 0x1018, "ptr-1": 0x1008, "1+ptr": 0x1018, "*ptr": 20,
    "ptr[1]": 30, "ptr[-1]": 10, "arr": 0x1008, "arr+2": 0x1018, "&arr[2]": 0x1018,
    "&arr": 0x1008, "*arr": 10, "*(long*)&arr": 10, "(char*)ptr+1": 0x1011,
    "(char *)arr[1]+16": 36, "&ptr[1]-&arr[0]": 2, "(long)ptr & ~0xf": 0x1010,
    "(void*)ptr+3": 0x1013, "(size_t)ptr": 0x1010, "(int)-1": MASK, "(char)0xff": MASK,
    # members
    "s.a": 7, "sp->a": 7, "(*sp).a": 7, "*sp->b": 10, "sp->b[3]": 40, "&s.b": 0x1038,
    "&sp->b": 0x1038, "((struct pair *)0x1030)->a": 7, "&*ptr": 0x1010,
}


@pytest.mark.parametrize("text", VALUES)
def test_values_follow_c(text):
    assert evaluate(text, Fake()) == VALUES[text]


WRITES = ["n=8", "arr[3]=0", "n++", "++n", "n--", "--n", "n+=1", "n|=1", "n<<=1",
          "*(long*)ptr=0x4242", "ptr[0]=7", "*ptr=1", "$rbx=0x4141", "$rbx++", "1?n=1:0"]
CALLS = ["malloc(16)", "abort()", "(long)malloc(16)", "free(ptr)", "sp->a(1)", "(ptr)(1)"]


@pytest.mark.parametrize("text", WRITES + CALLS)
def test_writes_and_calls_are_refused_before_any_look_up(text):
    r = Fake()
    with pytest.raises(ExprError) as e:
        evaluate(text, r)
    msg = str(e.value)
    assert "\n" not in msg
    if text in WRITES:
        assert msg == f"{text!r} would write to the target (multiheap only reads)"
    else:
        assert msg.endswith(": function calls are not allowed "
                            "(multiheap never runs code in the target)")
    assert [c for c in r.calls if c[0] != "is_type"] == []


BAD = {"1+": "incomplete", ")": "unexpected ')'", "arr[": "incomplete", "'x'": "literals",
       "0x": "bad number", "1,2": "commas", "n==5": "comparisons", "n&&1": "logical",
       "!n": "logical", "sizeof(long)": "sizeof", "*1": "plain number",
       "&1": "not a number", "s": "is a struct pair", "1/0": "division by zero",
       "ptr+ptr": "two pointers", "1-ptr": "subtract a pointer", "*(void*)ptr": "void",
       "nosuch": "no variable", "ptr*2": "not pointers", "(long": "type name",
       "0x1ffffffffffffffff": "64 bits", "n.a": "no members", "": "empty", "   ": "empty",
       "1 2": "unexpected", "$": "register", "@": "unexpected character",
       "(" * 300 + "1" + ")" * 300: "deeply nested", "~" * 300 + "1": "deeply nested",
       "ptr->": "member name", "long": "type name", "1<<64": "shift count"}


@pytest.mark.parametrize("text", BAD)
def test_bad_input_is_one_line_saying_why(text):
    with pytest.raises(ExprError) as e:
        evaluate(text, Fake())
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 200, msg
    assert msg.startswith("cannot evaluate ") and BAD[text] in msg, msg


def test_huge_argument_is_quoted_short():
    with pytest.raises(ExprError) as e:
        evaluate("x" * 5000, Fake())
    assert len(str(e.value)) < 200


def test_casts_need_a_type_else_parenthesised_expression():
    assert parse("(n)+1") == ("binary", "+", ("name", "n"), ("num", 1))
    assert parse("(size_t)n", lambda name: name == "size_t")[0] == "cast"
    assert parse("(unsigned long)n")[:3] == ("cast", "unsigned long", 0)
    assert parse("(const char **)n")[:3] == ("cast", "char", 2)


def test_tokens():
    kinds = [(t.kind, t.text) for t in tokenize("$rsp->x[0x1]<<=ns::v")]
    assert kinds == [("reg", "$rsp"), ("op", "->"), ("name", "x"), ("op", "["),
                     ("num", "0x1"), ("op", "]"), ("op", "<<="), ("name", "ns::v"),
                     ("end", "")]


def test_thirty_two_bit_targets_mask_to_four_bytes():
    r = Fake()
    r.pointer_size = 4
    assert evaluate("-1", r) == 0xFFFFFFFF
    assert struct.calcsize("<I") == 4
