"""What differs between the machines glibc runs on, as data (one row per ELF machine).

Each row says how the machine's thread pointer relates to its TLS (glibc's TLS variant:
II on x86, the thread pointer at ``struct pthread`` with the TLS blocks below it; I on
arm and aarch64, the TLS blocks above a two-word ``tcbhead_t`` and ``struct pthread``
below it) and which relocation types libc's file uses for the two things discovery reads
in it: pointers in ``.data`` (RELATIVE) and GOT slots that hold a thread-pointer offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Arch:
    """One machine's facts (numbers from the psABI of each; glibc's sysdeps tls.h)."""

    name: str
    machine: int  # ELF e_machine
    word: int  # bytes
    tls_variant: int  # 1: TLS above the thread pointer, 2: below it
    relative: frozenset[int]  # RELATIVE relocation types
    tpoff: frozenset[int]  # GOT slot holds the thread-pointer offset (added)
    tpoff_sub: frozenset[int] = frozenset()  # slot holds the offset to subtract
    tp_register: str = ""
    malloc_alignment: int = 0  # its own MALLOC_ALIGNMENT (0: 2 * SIZE_SZ)
    tcb_words: int = 0  # variant I: where tcbhead_t {dtv, private} is, in words from tp
    # a core's per-thread status note (elf_prstatus): indexes in pr_reg of pc, sp and
    # (where it is there) the thread pointer (i386: the gs selector; aarch64 and arm
    # keep it in a note of its own, NT_ARM_TLS)
    prstatus: tuple[int, ...] = ()


ARCHES = (
    Arch("x86_64", 62, 8, 2, frozenset({8}), frozenset({18}), tp_register="fs_base",
         prstatus=(16, 19, 21)),  # rip, rsp, fs_base
    Arch("i386", 3, 4, 2, frozenset({8}), frozenset({14}), frozenset({37}), "gs_base",
         16, prstatus=(12, 15, 10)),  # (alignment 16 since 2.26) eip, esp, xgs
    Arch("aarch64", 183, 8, 1, frozenset({1027}), frozenset({1030}),
         tp_register="tpidr_el0", prstatus=(32, 31)),  # pc, sp
    Arch("arm", 40, 4, 1, frozenset({23}), frozenset({19}), tp_register="tpidruro",
         prstatus=(15, 13)),  # r15, r13
    # riscv: the thread pointer points just past tcbhead_t, at the first TLS block
    Arch("riscv64", 243, 8, 1, frozenset({3}), frozenset({11}), tp_register="tp",
         tcb_words=-2, prstatus=(0, 2, 4)),  # pc, sp, tp
)
_BY_MACHINE = {a.machine: a for a in ARCHES}
_BY_NAME = {a.name: a for a in ARCHES}
# the names hosts give (gdb: "aarch64", "arm", "armv7"; lldb: "aarch64", "arm64", "armv7")
_ALIASES = {"arm64": "aarch64", "x86-64": "x86_64", "i686": "i386", "i386:x86-64": "x86_64",
            "riscv:rv64": "riscv64", "riscv": "riscv64"}


def by_machine(machine: int) -> Optional[Arch]:
    """The row for an ELF ``e_machine``, or None for a machine multiheap does not know."""
    return _BY_MACHINE.get(machine)


def by_name(name: str) -> Optional[Arch]:
    """The row for a host's architecture name (``aarch64``, ``armv7l``, ``x86_64``...)."""
    n = _ALIASES.get(name, name)
    if n.startswith("arm") and n not in _BY_NAME:
        n = "arm"
    return _BY_NAME.get(n)


def tls_variant(name: str) -> int:
    """1 (TLS above the thread pointer) or 2 (below it); 2 for an unknown name."""
    a = by_name(name)
    return a.tls_variant if a else 2


def tcb_offset(name: str, word: int) -> int:
    """Variant I: bytes from the thread pointer to tcbhead_t (arm 0, riscv -16)."""
    a = by_name(name)
    return a.tcb_words * word if a else 0

