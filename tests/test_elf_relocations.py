"""elffile's relocation reader (multiheap's one ELF reader) against pyelftools, on every
libc and ld.so here: the host's x86_64 and i386 ones, the glibc builds under
/opt/multiheap-glibc, the arm64/armhf sysroots and the cross libcs (aarch64, armhf,
riscv64): 32- and 64-bit, REL (i386, arm) and RELA.  Every entry of every relocation
section must be the same, and so must the facts discovery takes from libc's file
(.data with RELATIVE addends applied, the TPOFF GOT slots, PT_TLS's size, the machine).
No big-endian libc is here: objects compiled for big-endian machines (clang -c) give
both byte orders.
"""

from __future__ import annotations

import glob
import os

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from harness import build

from multiheap import arch
from multiheap.discovery.evidence import read_elf
from multiheap.elffile import read_file, relocations

PATTERNS = ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/i386-linux-gnu/libc.so.6",
            "/opt/multiheap-glibc/*/lib/x86_64-linux-gnu/libc.so.6",
            "/opt/multiheap-glibc/*/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/opt/multiheap-arm/*/sysroot/lib/*/libc.so.6",
            "/usr/*-linux-gnu*/lib/libc.so.6", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/usr/*-linux-gnu*/lib/ld-linux*.so*")
FILES = sorted({os.path.realpath(f) for p in PATTERNS for f in glob.glob(p)})
MACHINES = {"EM_X86_64": 62, "EM_386": 3, "EM_AARCH64": 183, "EM_ARM": 40, "EM_RISCV": 243}
# objects (tests/programs/relocs.c, clang -c) for both byte orders: (target, bits, big, REL)
OBJECTS = {"mips-linux-gnu": (32, True, True), "armeb-linux-gnueabi": (32, True, True),
           "aarch64_be-linux-gnu": (64, True, False), "s390x-linux-gnu": (64, True, False),
           "i686-linux-gnu": (32, False, True), "x86_64-linux-gnu": (64, False, False)}


def test_the_files_cover_every_kind():
    """32 and 64 bits, REL and RELA, every machine multiheap knows."""
    seen = set()
    for path in FILES:
        elf, data = read_file(path)
        seen.add((elf.bits, elf.machine, next(relocations(elf, data)).addend is None))
    assert {(64, 62, False), (32, 3, True), (64, 183, False), (32, 40, True),
            (64, 243, False)} <= seen, seen


def _relocs(path: str) -> list:
    with open(path, "rb") as fh:
        return [(r["r_offset"], r["r_info_type"], r["r_info_sym"],
                 r["r_addend"] if r.is_RELA() else None)
                for sec in ELFFile(fh).iter_sections() if isinstance(sec, RelocationSection)
                and sec["sh_type"] in ("SHT_RELA", "SHT_REL") for r in sec.iter_relocations()]


@pytest.mark.parametrize("target", OBJECTS)
def test_relocations_of_either_byte_order_match_pyelftools(target):
    bits, big, rel = OBJECTS[target]
    obj = str(build("relocs", cc="clang-16", cflags=(f"--target={target}", "-c", "-fPIC")))
    elf, data = read_file(obj)
    assert (elf.bits, elf.endian == "big") == (bits, big)
    got = [(r.offset, r.type, r.sym, r.addend) for r in relocations(elf, data)]
    assert len(got) >= 5 and got == _relocs(obj)
    assert all((r[3] is None) == rel for r in got)


def _pyelftools(path: str) -> tuple[list, dict]:
    """Every relocation, and the facts discovery reads, as pyelftools gives them."""
    relocs = _relocs(path)
    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        machine = MACHINES.get(elf["e_machine"], 0)
        row = arch.by_machine(machine)
        sec = elf.get_section_by_name(".data")
        data = bytearray(sec.data()) if sec is not None else bytearray()
        slots = []
        width, order = elf.elfclass // 8, "little" if elf.little_endian else "big"
        for off, typ, _sym, add in relocs:
            if typ in row.relative and add is not None and sec is not None and \
                    sec["sh_addr"] <= off < sec["sh_addr"] + len(data):
                at = off - sec["sh_addr"]
                data[at:at + width] = (add % (1 << 8 * width)).to_bytes(width, order)
            elif typ in row.tpoff or typ in row.tpoff_sub:
                slots.append((off, -1 if typ in row.tpoff_sub else 1))
        loads = [s["p_vaddr"] for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        tls = [-(-s["p_memsz"] // s["p_align"]) * s["p_align"] for s in elf.iter_segments()
               if s["p_type"] == "PT_TLS"]
        facts = {"pie": elf["e_type"] == "ET_DYN", "first_load": min(loads) & ~0xFFF,
                 "data": [(sec["sh_addr"], bytes(data))] if sec is not None else [],
                 "tpoff_slots": slots, "tls_size": tls[0] if tls else 0, "machine": machine}
    return relocs, facts


@pytest.mark.parametrize("path", FILES)
def test_relocations_and_facts_match_pyelftools(path):
    want_relocs, want = _pyelftools(path)
    elf, data = read_file(path)
    got = [(r.offset, r.type, r.sym, r.addend) for r in relocations(elf, data)]
    assert len(got) == len(want_relocs) > 0 and got == want_relocs
    facts = read_elf(path)
    assert facts is not None
    assert {k: getattr(facts, k) for k in want} == want
