"""Just enough ELF: program headers, section headers, symbol tables, relocations, notes and
build-ids, of files, cores and images loaded in a target's memory (the project's one ELF
reader).

A core that is missing, truncated or made from another program must be one clear
line, not a debugger's warning followed by garbage: this reads the core's program
headers and notes (NT_FILE, NT_AUXV) to find its executable and compare build-ids.
The engine uses the same reader for libc's build-id (multiheap.debugfile).
No debugger module is imported here.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional

from multiheap import arch
from multiheap.errors import MultiheapError
from multiheap.target import byte_order

ET_DYN, ET_CORE, PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE, PT_TLS = 3, 4, 1, 2, 3, 4, 7
SHT_PROGBITS, SHT_SYMTAB, SHT_RELA, SHT_REL, SHT_DYNSYM = 1, 2, 4, 9, 11
STT_OBJECT, STT_FUNC, STT_TLS, STT_GNU_IFUNC = 1, 2, 6, 10
NT_AUXV, NT_FILE, NT_GNU_BUILD_ID = 6, 0x46494C45, 3
NT_PRSTATUS, NT_386_TLS, NT_ARM_TLS, NT_SIGINFO = 1, 0x200, 0x401, 0x53494749
AT_PHDR = 3


class BadInputError(MultiheapError):
    """The file given cannot be used (missing, not a core, truncated, mismatched)."""


@dataclass
class Elf:
    """An ELF file's header and program headers."""

    path: str
    bits: int
    endian: str
    etype: int
    phdrs: list[tuple[int, int, int, int, int]]  # (type, offset, vaddr, filesz, memsz)
    size: int
    machine: int = 0  # e_machine
    phflags: list[int] = field(default_factory=list)  # p_flags of each program header
    phalign: list[int] = field(default_factory=list)  # p_align of each

    @property
    def fmt(self) -> str:
        return byte_order(self.endian)


def read_elf(path: str, data: Optional[bytes] = None) -> Elf:
    """Parse the ELF header and program headers of ``path`` (or of ``data``)."""
    if data is None:
        try:
            with open(path, "rb") as f:
                head = f.read(64)
                size = os.fstat(f.fileno()).st_size
                bits, e, phoff, phentsize, phnum = _header(path, head)
                table = b""
                if phoff < size:  # (a corrupted offset may not even fit seek())
                    f.seek(phoff)
                    table = f.read(phentsize * phnum)
        except OSError as err:
            raise BadInputError(f"cannot read {path}: {err.strerror}") from None
    else:
        size = len(data)
        head = data[:64]
        bits, e, phoff, phentsize, phnum = _header(path, head)
        table = data[phoff:phoff + phentsize * phnum]
    if len(table) < phentsize * phnum:
        raise BadInputError(f"{path} is truncated (program headers missing)")
    etype, machine = struct.unpack_from(e + "HH", head, 16)
    elf = Elf(path, bits, "little" if e == "<" else "big", etype, [], size, machine)
    for i in range(phnum):
        off = i * phentsize
        if bits == 64:
            pt, fl, po, pv, _pa, fs, ms, al = struct.unpack_from(e + "IIQQQQQQ", table, off)
        else:
            pt, po, pv, _pa, fs, ms, fl, al = struct.unpack_from(e + "IIIIIIII", table, off)
        elf.phdrs.append((pt, po, pv, fs, ms))
        elf.phflags.append(fl)
        elf.phalign.append(al)
    return elf


def ident(path: str) -> Optional[tuple[int, int]]:
    """(e_type, e_machine) from a file's first 20 bytes; None if it is not a readable
    ELF file (for quick sorting of many files, where an error would be one too many)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return struct.unpack_from(("<" if head[5] == 1 else ">") + "HH", head, 16)


def _header(path: str, head: bytes) -> tuple[int, str, int, int, int]:
    """(bits, struct byte order, phoff, phentsize, phnum) of a checked ELF header."""
    if head[:4] != b"\x7fELF":
        raise BadInputError(f"{path} is not an ELF file")
    bits = 64 if head[4:5] == b"\x02" else 32
    e = "<" if head[5:6] == b"\x01" else ">"
    if len(head) < (64 if bits == 64 else 52):
        raise BadInputError("truncated ELF header")
    if bits == 64:
        phoff = struct.unpack_from(e + "Q", head, 32)[0]
        phentsize, phnum = struct.unpack_from(e + "HH", head, 54)
    else:
        phoff = struct.unpack_from(e + "I", head, 28)[0]
        phentsize, phnum = struct.unpack_from(e + "HH", head, 42)
    if phnum and phentsize < (56 if bits == 64 else 32):
        raise BadInputError(f"corrupted ELF header (program header size {phentsize})")
    return bits, e, phoff, phentsize, phnum


@dataclass(frozen=True)
class Section:
    """One section header (``name`` resolved through the section-name table)."""

    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int


@dataclass(frozen=True)
class Symbol:
    """One symbol-table entry: ``type`` is STT_*, ``bind`` STB_*, ``shndx`` 0 if undefined."""

    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int


def sections(elf: Elf, data: bytes) -> list[Section]:
    """The section headers of the ELF file held whole in ``data`` ([] when they are cut
    off or corrupted)."""
    e, is64 = elf.fmt, elf.bits == 64
    try:
        if is64:
            shoff = struct.unpack_from(e + "Q", data, 0x28)[0]
            shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, 0x3A)
            fmt = struct.Struct(e + "IIQQQQIIQQ")
        else:
            shoff = struct.unpack_from(e + "I", data, 0x20)[0]
            shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, 0x2E)
            fmt = struct.Struct(e + "IIIIIIIIII")
    except struct.error:
        return []
    heads = []
    for i in range(shnum):
        off = shoff + i * shentsize
        if off + fmt.size > len(data):
            return []
        name, stype, _fl, addr, offset, size, link, _info, _al, _es = fmt.unpack_from(data, off)
        heads.append((name, stype, addr, offset, size, link))
    if not heads or shstrndx >= len(heads):
        return []
    strs = data[heads[shstrndx][3]:heads[shstrndx][3] + heads[shstrndx][4]]
    out = []
    for name, stype, addr, offset, size, link in heads:
        end = strs.find(b"\0", name)
        out.append(Section(strs[name:end if end >= 0 else None].decode(errors="replace"),
                           stype, addr, offset, size, link))
    return out


def symbols(elf: Elf, data: bytes, kind: int = SHT_SYMTAB,
            names: Optional[Iterable[str]] = None) -> Iterator[Symbol]:
    """The entries of the ``kind`` symbol tables (.symtab or .dynsym) of the ELF file
    held in ``data``; only those called one of ``names`` when given (found by their
    string-table offsets: far faster than naming every symbol of libc)."""
    secs = sections(elf, data)
    e, is64 = elf.fmt, elf.bits == 64
    ent = struct.Struct(e + ("IBBHQQ" if is64 else "IIIBBH"))
    for sec in secs:
        if sec.type != kind or sec.link >= len(secs):
            continue
        strtab = data[secs[sec.link].offset:secs[sec.link].offset + secs[sec.link].size]
        wanted: Optional[dict[int, str]] = None
        if names is not None:
            wanted = {}
            for name in names:
                key, pos = name.encode() + b"\0", 0
                while (pos := strtab.find(key, pos)) != -1:
                    wanted[pos] = name
                    pos += 1
        raw = data[sec.offset:sec.offset + sec.size]
        for f in ent.iter_unpack(raw[:len(raw) - len(raw) % ent.size]):
            if is64:
                nm, info, shndx, value, size = f[0], f[1], f[3], f[4], f[5]
            else:
                nm, value, size, info, shndx = f[0], f[1], f[2], f[3], f[5]
            if wanted is not None:
                name = wanted.get(nm)
                if name is None:
                    continue
            else:
                end = strtab.find(b"\0", nm)
                name = strtab[nm:end if end >= 0 else None].decode(errors="replace")
            yield Symbol(name, value, size, info & 0xF, info >> 4, shndx)


@dataclass(frozen=True)
class Reloc:
    """One relocation: where, its type and symbol index, its addend (None for REL)."""

    offset: int
    type: int
    sym: int
    addend: Optional[int]


def relocations(elf: Elf, data: bytes) -> Iterator[Reloc]:
    """The entries of every SHT_RELA and SHT_REL section (.rela.dyn, .rel.plt...) of the
    ELF file held in ``data``, in section order."""
    e, is64 = elf.fmt, elf.bits == 64
    for sec in sections(elf, data):
        if sec.type not in (SHT_RELA, SHT_REL):
            continue
        rela = sec.type == SHT_RELA
        ent = struct.Struct(e + ("QQ" if is64 else "II") + (("q" if is64 else "i") if rela
                                                              else ""))
        raw = data[sec.offset:sec.offset + sec.size]
        for f in ent.iter_unpack(raw[:len(raw) - len(raw) % ent.size]):
            info = f[1]
            typ, sym = (info & 0xFFFFFFFF, info >> 32) if is64 else (info & 0xFF, info >> 8)
            yield Reloc(f[0], typ, sym, f[2] if rela else None)


def read_file(path: str) -> tuple[Elf, bytes]:
    """An ELF file read whole, with its headers (BadInputError when it is not one)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise BadInputError(f"cannot read {path}: {err.strerror}") from None
    return read_elf(path, data), data


def iter_notes(data: bytes, endian: str):
    """(type, name, desc) of each note in a PT_NOTE segment's bytes."""
    e = byte_order(endian)
    off = 0
    while off + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(e + "III", data, off)
        off += 12
        name = data[off:off + namesz].rstrip(b"\0")
        off += (namesz + 3) & ~3
        desc = data[off:off + descsz]
        off += (descsz + 3) & ~3
        yield ntype, name, desc


def _build_id_in_notes(notes: bytes, endian: str) -> Optional[str]:
    for ntype, name, desc in iter_notes(notes, endian):
        if ntype == NT_GNU_BUILD_ID and name == b"GNU":
            return desc.hex()
    return None


def build_id_of(elf: Elf, data: bytes) -> Optional[str]:
    """The GNU build-id from the notes of an ELF image held in ``data``."""
    for pt, off, _va, fs, _ms in elf.phdrs:
        if pt == PT_NOTE:
            found = _build_id_in_notes(data[off:off + fs], elf.endian)
            if found:
                return found
    return None


def loaded_build_id(path: str, read: Callable[[int, int], bytes]) -> Optional[str]:
    """The build-id of an ELF object as it is loaded in memory.

    ``read(offset, n)`` reads at an offset from the object's load base: the headers
    are in its first page, the notes at their segments' virtual addresses.
    Raises BadInputError (or the reader's own error) when that is not an ELF image.
    """
    elf = read_elf(path, read(0, 0x1000))
    for pt, _off, va, fs, _ms in elf.phdrs:
        if pt == PT_NOTE and 0 < fs <= 1 << 16:
            found = _build_id_in_notes(read(va, fs), elf.endian)
            if found:
                return found
    return None


def file_build_id(path: str) -> Optional[str]:
    """Build-id of an ELF file on disk, or None."""
    try:
        elf = read_elf(path)
        with open(path, "rb") as f:
            need = max((off + fs for pt, off, _v, fs, _m in elf.phdrs if pt == PT_NOTE),
                       default=0)
            data = f.read(need)
    except (BadInputError, OSError):
        return None
    return build_id_of(elf, data)


@dataclass
class CoreThread:
    """One thread's NT_PRSTATUS: its tid, the signal it took, pc, sp and thread pointer
    (None where the core does not hold it)."""

    tid: int
    signal: int
    pc: Optional[int] = None
    sp: Optional[int] = None
    tp: Optional[int] = None


@dataclass
class CoreInfo:
    """What a core file says about itself."""

    path: str
    bits: int
    machine: int = 0
    prstatus: list[CoreThread] = field(default_factory=list)  # in the core's order
    siginfo: Optional[tuple[int, int, int, int]] = None  # the first: signo, errno, code, addr
    files: list[tuple[int, int, int, str]] = field(default_factory=list)  # NT_FILE
    exe: Optional[str] = None
    exe_build_id: Optional[str] = None  # read from the core's copy of the ELF header
    threads: dict[int, Optional[int]] = field(default_factory=dict)  # tid -> thread pointer
    _gs: dict[int, int] = field(default_factory=dict, repr=False)  # i386: tid -> gs selector


class _CoreReader:
    def __init__(self, path: str, elf: Elf) -> None:
        self.path, self.elf = path, elf

    def at(self, offset: int, size: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def mem(self, addr: int, size: int) -> Optional[bytes]:
        for pt, off, va, fs, _ms in self.elf.phdrs:
            if pt == PT_LOAD and va <= addr and addr + size <= va + fs:
                return self.at(off + addr - va, size)
        return None


def inspect_core(path: str) -> CoreInfo:
    """Check that ``path`` is a complete core file and find its executable."""
    if not os.path.exists(path):
        raise BadInputError(f"core file {path} does not exist")
    if os.path.isdir(path):
        raise BadInputError(f"{path} is a directory, not a core file")
    try:
        elf = read_elf(path)
    except BadInputError as e:
        raise BadInputError(f"{path} is not a core file ({e})") from None
    if elf.etype != ET_CORE:
        raise BadInputError(f"{path} is an ELF file but not a core file")
    need = max((off + fs for _pt, off, _v, fs, _m in elf.phdrs), default=0)
    if elf.size < need:
        raise BadInputError(f"core file {path} is truncated ({elf.size:,} of {need:,} bytes)")
    info = CoreInfo(path, elf.bits, elf.machine)
    rd = _CoreReader(path, elf)
    word = "Q" if elf.bits == 64 else "I"
    e = elf.fmt
    w = 8 if elf.bits == 64 else 4
    phdr = None
    for pt, off, _v, fs, _m in elf.phdrs:
        if pt != PT_NOTE:
            continue
        for ntype, _name, desc in iter_notes(rd.at(off, fs), elf.endian):
            if ntype == NT_FILE and len(desc) >= 2 * w:
                count, _page = struct.unpack_from(e + word * 2, desc, 0)
                if (2 + 3 * count) * w > len(desc):
                    continue  # a corrupted count: the note names no file we can trust
                names = desc[(2 + 3 * count) * w:].split(b"\0")
                for i in range(count):
                    s, en, fo = struct.unpack_from(e + word * 3, desc, (2 + 3 * i) * w)
                    name = names[i].decode(errors="replace") if i < len(names) else ""
                    info.files.append((s, en, fo, name))
            elif ntype in (NT_PRSTATUS, NT_386_TLS, NT_ARM_TLS):
                _thread_note(info, ntype, _name, desc, elf)
            elif ntype == NT_SIGINFO and info.siginfo is None and len(desc) >= 16 + w:
                signo, errno, code = struct.unpack_from(e + "iii", desc, 0)
                # si_addr: the union after three ints, word-aligned
                addr = struct.unpack_from(e + word, desc, 16 if w == 8 else 12)[0]
                info.siginfo = (signo, errno, code, addr)
            elif ntype == NT_AUXV:
                for i in range(0, len(desc) - 2 * w + 1, 2 * w):
                    key, val = struct.unpack_from(e + word * 2, desc, i)
                    if key == AT_PHDR:
                        phdr = val
    if phdr is not None:
        for s, en, _fo, name in info.files:
            if s <= phdr < en:
                info.exe = name
                break
    if info.exe is not None:
        first = min((s for s, _e, fo, n in info.files if n == info.exe and fo == 0),
                    default=None)
        page = rd.mem(first, 0x1000) if first is not None else None
        if page is not None:
            try:
                info.exe_build_id = build_id_of(read_elf(info.exe, page), page)
            except BadInputError:
                pass
    return info


def _thread_note(info: CoreInfo, ntype: int, name: bytes, desc: bytes, elf: Elf) -> None:
    """One thread's NT_PRSTATUS (tid, signal, pc, sp; the thread pointer where pr_reg
    holds it, per :mod:`multiheap.arch`), or the note after it with its thread pointer:
    i386's NT_386_TLS (the gs segment's base), arm's NT_ARM_TLS (tpidr)."""
    e, w = elf.fmt, elf.bits // 8
    word = "Q" if w == 8 else "I"
    last = info.prstatus[-1] if info.prstatus else None
    if ntype == NT_PRSTATUS and name == b"CORE":
        pid_off, reg_off = (32, 112) if w == 8 else (24, 72)
        row = arch.by_machine(elf.machine)
        regs = row.prstatus if row is not None else ()
        if len(desc) < reg_off + (max(regs, default=0) + 1) * w:
            return
        th = CoreThread(struct.unpack_from(e + "i", desc, pid_off)[0],
                        struct.unpack_from(e + "h", desc, 12)[0])
        vals = [struct.unpack_from(e + word, desc, reg_off + i * w)[0] for i in regs]
        if vals:
            th.pc, th.sp = vals[:2]
        if len(vals) > 2 and elf.machine == 3:  # i386: the gs selector (NT_386_TLS)
            info._gs[th.tid] = vals[2]
        elif len(vals) > 2:
            th.tp = vals[2] or None
        info.prstatus.append(th)
        info.threads[th.tid] = th.tp
    elif ntype == NT_386_TLS and last is not None and last.tid in info._gs:
        sel = info._gs[last.tid] >> 3
        for i in range(0, len(desc) - 15, 16):
            entry, base = struct.unpack_from(e + "II", desc, i)
            if entry == sel:
                last.tp = info.threads[last.tid] = base
    elif ntype == NT_ARM_TLS and last is not None and len(desc) >= w:
        last.tp = info.threads[last.tid] = struct.unpack_from(e + word, desc, 0)[0] or None


def check_core_matches(core: CoreInfo, exe: str) -> None:
    """Raise when ``exe`` is plainly not the program the core was made from."""
    if not os.path.isfile(exe):
        raise BadInputError(f"executable {exe} does not exist")
    mine = file_build_id(exe)
    if mine and core.exe_build_id:
        if mine != core.exe_build_id:
            raise BadInputError(f"core file {core.path} was not made from {exe} (build-id "
                                f"{core.exe_build_id[:12]}... in the core, {mine[:12]}... "
                                "in the file)")
        return
    if core.exe and os.path.basename(core.exe) != os.path.basename(exe):
        raise BadInputError(f"core file {core.path} was made from {core.exe}, not {exe}")
