"""Address arguments in lldb: :mod:`multiheap.expr` read with lldb's look-ups only
(variables, registers, types), never lldb's expression evaluator, which maps memory
into the target and writes there."""

from __future__ import annotations

from typing import Optional

from multiheap import expr
from multiheap.adapters.lldb_import import lldb
from multiheap.expr import ExprError

_BASIC_TYPES = {
    "void": "eBasicTypeVoid", "char": "eBasicTypeChar", "signed char": "eBasicTypeSignedChar",
    "unsigned char": "eBasicTypeUnsignedChar", "short": "eBasicTypeShort",
    "unsigned short": "eBasicTypeUnsignedShort", "int": "eBasicTypeInt",
    "unsigned": "eBasicTypeUnsignedInt", "long": "eBasicTypeLong",
    "unsigned long": "eBasicTypeUnsignedLong", "long long": "eBasicTypeLongLong",
    "unsigned long long": "eBasicTypeUnsignedLongLong", "_Bool": "eBasicTypeBool",
    "bool": "eBasicTypeBool", "float": "eBasicTypeFloat", "double": "eBasicTypeDouble",
}


def _basic_name(name: str) -> str:
    """C's spellings of one builtin type as one: ``long int`` and ``signed long`` are
    ``long``, ``unsigned int`` is ``unsigned``."""
    words = name.split()
    if "int" in words and len(words) > 1:
        words.remove("int")
    if words[:1] == ["signed"] and words[1:] != ["char"]:
        words = words[1:] or ["int"]
    return " ".join(words)


class _Symbol:
    """A symbol without debug info: an address and no type."""

    def __init__(self, name: str, addr: int, code: bool) -> None:
        self.name, self.addr, self.code = name, addr, code


class LldbResolver:
    """The leaves of an address argument (multiheap.expr) from lldb's look-ups only:
    variables, registers, types, and memory read through values lldb makes locally
    (``CreateValueFromAddress``/``CreateValueFromData``).  Unlike lldb's expression
    evaluator, nothing is allocated in, written to or run in the target."""

    def __init__(self, target, frame=None) -> None:
        self.t = target
        self.frame = frame if frame is not None and frame.IsValid() else None
        self.pointer_size = target.GetAddressByteSize()

    # names ---------------------------------------------------------------------------
    def variable(self, name: str):
        if self.frame is not None:
            v = self.frame.FindVariable(name, lldb.eNoDynamicValues)
            if v.IsValid():
                return v
        v = self.t.FindFirstGlobalVariable(name)
        if v.IsValid():
            return v
        for sc in self.t.FindSymbols(name):
            sym = sc.GetSymbol()
            addr = sym.GetStartAddress().GetLoadAddress(self.t) if sym.IsValid() else None
            if addr not in (None, lldb.LLDB_INVALID_ADDRESS):
                return _Symbol(name, addr, sym.GetType() in (lldb.eSymbolTypeCode,
                                                             lldb.eSymbolTypeResolver))
        raise ExprError(f"no variable or symbol named {_short(name)}")

    def register(self, name: str) -> int:
        if self.frame is None:
            raise ExprError(f"no frame to read ${_short(name)} from")
        v = self.frame.FindRegister(name)
        if not v.IsValid():
            raise ExprError(f"no register ${_short(name)}")
        err = lldb.SBError()
        n = v.GetValueAsUnsigned(err, 0)
        if err.Fail():
            raise ExprError(f"${name} is not a number")
        return n

    def _type(self, name: str):
        basic = _BASIC_TYPES.get(_basic_name(name))
        if basic is not None:
            return self.t.GetBasicType(getattr(lldb, basic))
        for cand in (name, name.split(" ", 1)[-1]):
            ty = self.t.FindFirstType(cand)
            if ty.IsValid():
                return ty
        return None

    def is_type(self, name: str) -> bool:
        return self._type(name) is not None

    # values --------------------------------------------------------------------------
    def _make(self, ty, value: int):
        """A value of type ``ty`` held by lldb only (nothing in the target)."""
        size = ty.GetByteSize()
        value &= (1 << (8 * size)) - 1
        order = self.t.GetByteOrder()
        # SBData.SetData keeps a pointer to a Python buffer that is then freed, and
        # lldb 16 crashes (double free) on an unsigned array item with the top bit set:
        # the signed array constructors, with the same bits.
        if size == 8:
            value -= (value >> 63) << 64
            data = lldb.SBData.CreateDataFromSInt64Array(order, self.pointer_size, [value])
        else:
            if order == lldb.eByteOrderBig:
                value <<= 8 * (4 - size)
            value -= (value >> 31) << 32
            data = lldb.SBData.CreateDataFromSInt32Array(order, self.pointer_size, [value])
        return self.t.CreateValueFromData("value", data, ty)

    def cast(self, type_name: str, stars: int, value: int):
        ty = self._type(type_name)
        if ty is None:
            raise ExprError(f"no type named {_short(type_name)}")
        for _ in range(stars):
            ty = ty.GetPointerType()
        flags = ty.GetCanonicalType().GetTypeFlags()
        if not flags & (lldb.eTypeIsPointer | lldb.eTypeIsEnumeration) and \
                (not flags & lldb.eTypeIsScalar or flags & lldb.eTypeIsFloat or
                 ty.GetByteSize() == 0):
            raise ExprError(f"cannot cast to {type_name} (not an integer or a pointer type)")
        return self._make(ty, value)

    def _unreadable(self, v) -> ExprError:
        addr = v.GetLoadAddress()
        where = f" at {addr:#x}" if addr != lldb.LLDB_INVALID_ADDRESS else ""
        return ExprError(f"cannot read {v.GetType().GetByteSize()} bytes{where}")

    def number(self, v) -> tuple[int, Optional[int]]:
        if isinstance(v, _Symbol):
            if v.code:
                return v.addr, None
            raise ExprError(f"{_short(v.name)} has no debug info: take its address "
                            f"(&{v.name}) or cast it, as in *(long *)&{v.name}")
        ty = v.GetType().GetCanonicalType()
        flags = ty.GetTypeFlags()
        if ty.IsArrayType() or ty.GetTypeClass() == lldb.eTypeClassFunction:
            addr = v.GetLoadAddress()
            if addr == lldb.LLDB_INVALID_ADDRESS:
                raise ExprError(f"{_short(v.GetName() or 'value')} has no address")
            step = ty.GetArrayElementType().GetByteSize() if ty.IsArrayType() else None
            return addr, step or (1 if ty.IsArrayType() else None)
        if not flags & (lldb.eTypeIsPointer | lldb.eTypeIsScalar | lldb.eTypeIsEnumeration) \
                or flags & lldb.eTypeIsFloat:
            raise ExprError(f"{_short(v.GetName() or 'value')} is a {v.GetTypeName()}, "
                            "not a number or an address")
        err = lldb.SBError()
        if flags & lldb.eTypeIsSigned:
            n = v.GetValueAsSigned(err, 0)
        else:
            n = v.GetValueAsUnsigned(err, 0)
        if err.Fail() or v.GetError().Fail():
            raise self._unreadable(v)
        if flags & lldb.eTypeIsPointer:
            return n, ty.GetPointeeType().GetByteSize() or 1
        return n, None

    def pointer(self, v, address: int):
        if isinstance(v, _Symbol):
            return self._make(self.t.GetBasicType(lldb.eBasicTypeVoid).GetPointerType(),
                              address)
        ty = v.GetType()
        if ty.GetCanonicalType().IsArrayType():
            ty = ty.GetCanonicalType().GetArrayElementType().GetPointerType()
        return self._make(ty, address)

    def deref(self, p):
        pointee = p.GetType().GetPointeeType()
        canon = pointee.GetCanonicalType()
        if canon.GetBasicType() == lldb.eBasicTypeVoid or \
                canon.GetTypeClass() == lldb.eTypeClassFunction or not pointee.IsValid():
            raise ExprError(f"cannot dereference a {p.GetTypeName()}: cast it first")
        addr = p.GetValueAsUnsigned()
        err = lldb.SBError()
        proc = self.t.GetProcess()
        if proc.IsValid():
            proc.ReadMemory(addr, 1, err)
        else:
            self.t.ReadMemory(lldb.SBAddress(addr, self.t), 1, err)
        if err.Fail():
            raise ExprError(f"cannot read memory at {addr:#x}")
        return self.t.CreateValueFromAddress("*", lldb.SBAddress(addr, self.t), pointee)

    def address_of(self, v):
        if isinstance(v, _Symbol):
            return self.pointer(v, v.addr)
        addr = v.GetLoadAddress()
        if addr == lldb.LLDB_INVALID_ADDRESS:
            raise ExprError(f"{_short(v.GetName() or 'value')} is not in memory: "
                            "it has no address")
        return self._make(v.GetType().GetPointerType(), addr)

    def member(self, v, name: str):
        if isinstance(v, _Symbol):
            raise ExprError(f"{_short(v.name)} has no debug info: no members")
        ty = v.GetType().GetCanonicalType()
        if ty.GetTypeClass() not in (lldb.eTypeClassStruct, lldb.eTypeClassUnion,
                                     lldb.eTypeClassClass):
            raise ExprError(f"'.{_short(name)}' on a {v.GetTypeName()}, which has no members")
        m = v.GetChildMemberWithName(name, lldb.eNoDynamicValues)
        if not m.IsValid():
            raise ExprError(f"{v.GetTypeName()} has no member {_short(name)}")
        return m


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def evaluate(target, frame, text: str) -> int:
    """An address argument read by multiheap.expr with lldb's look-ups (never lldb's
    expression evaluator: it maps memory into the target and writes there)."""
    return expr.evaluate(text, LldbResolver(target, frame))


