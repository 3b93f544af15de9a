"""The kernel's special sections, described once as data and read by one generic reader.

Like objtool's special.c: each table is a row (vmlinux bounds symbols, module section name,
entry size, fields); `read_table` returns its entries with every pointer field resolved to an
address in the image's address space. A vmlinux's linker has already resolved its fields
(rel32 = field address + s32); a module's fields are zero plus a relocation (target = S + A).
Bounds come from the ``__start_*``/``__stop_*`` symbols, not section headers: ``__mcount_loc``
and ``_kprobe_blacklist`` are merged into ``.init.data`` in a vmlinux. Layouts are those of
Linux 6.1 x86-64 (Debian's config: GENERIC_BUG_RELATIVE_POINTERS + DEBUG_BUGVERBOSE; 5.10.223's are
the same); the rows of `NEWER_LAYOUTS` replace them in kernels carrying the change they are keyed by
(image/changes.py: the section's entry size where the linker kept it, else the version).
"""

from __future__ import annotations

import enum
import struct
from typing import TYPE_CHECKING, NamedTuple

from probelint.image.changes import applies
from probelint.image.version import table_layout_version

if TYPE_CHECKING:
    from probelint.image.kversion import KernelVersion
    from probelint.image.view import KernelImage

__all__ = ["NEWER_LAYOUTS", "TABLES", "Field", "Kind", "Table", "layout_for", "read_table"]


class Kind(enum.Enum):
    ABS64 = "abs64"  # absolute address (R_X86_64_64 in a module)
    REL32 = "rel32"  # address of the field + signed 32-bit value (R_X86_64_PC32)
    REL64 = "rel64"  # address of the field + signed 64-bit value (R_X86_64_PC64)
    U8 = "u8"
    U16 = "u16"
    S32 = "s32"


_FORMATS = {Kind.ABS64: "<Q", Kind.REL32: "<i", Kind.REL64: "<q", Kind.U8: "<B", Kind.U16: "<H", Kind.S32: "<i"}
_POINTERS = frozenset({Kind.ABS64, Kind.REL32, Kind.REL64})


class Field(NamedTuple):
    name: str
    offset: int
    kind: Kind


class Table(NamedTuple):
    name: str
    start: str  # vmlinux bounds symbols
    stop: str
    section: str  # module section
    entry_size: int
    fields: tuple[Field, ...]
    consumer: str  # the kernel code that reads it


def _t(name: str, start: str, stop: str, section: str, size: int, fields: str, consumer: str) -> Table:
    parsed = []
    for spec in fields.split():
        fname, offset, kind = spec.split(":")
        parsed.append(Field(fname, int(offset), Kind(kind)))
    return Table(name, start, stop, section, size, tuple(parsed), consumer)


TABLES: dict[str, Table] = {t.name: t for t in (
    _t("mcount_loc", "__start_mcount_loc", "__stop_mcount_loc", "__mcount_loc", 8,
       "addr:0:abs64", "kernel/trace/ftrace.c:ftrace_process_locs"),
    _t("kprobe_blacklist", "__start_kprobe_blacklist", "__stop_kprobe_blacklist", "_kprobe_blacklist", 8,
       "addr:0:abs64", "kernel/kprobes.c:populate_kprobe_blacklist"),
    _t("jump_table", "__start___jump_table", "__stop___jump_table", "__jump_table", 16,
       "code:0:rel32 target:4:rel32 key:8:rel64", "kernel/jump_label.c:jump_label_text_reserved"),
    _t("static_call_sites", "__start_static_call_sites", "__stop_static_call_sites", ".static_call_sites", 8,
       "addr:0:rel32 key:4:rel32", "kernel/static_call_inline.c:static_call_text_reserved"),
    _t("ex_table", "__start___ex_table", "__stop___ex_table", "__ex_table", 12,
       "insn:0:rel32 fixup:4:rel32 data:8:s32", "kernel/extable.c:search_exception_tables"),
    _t("bug_table", "__start___bug_table", "__stop___bug_table", "__bug_table", 12,
       "addr:0:rel32 file:4:rel32 line:8:u16 flags:10:u16", "lib/bug.c:find_bug"),
    _t("alt_instructions", "__alt_instructions", "__alt_instructions_end", ".altinstructions", 12,
       "instr:0:rel32 repl:4:rel32 cpuid:8:u16 instrlen:10:u8 replacementlen:11:u8",
       "arch/x86/kernel/alternative.c:apply_alternatives"),
    _t("retpoline_sites", "__retpoline_sites", "__retpoline_sites_end", ".retpoline_sites", 4,
       "addr:0:rel32", "arch/x86/kernel/alternative.c:apply_retpolines"),
    _t("return_sites", "__return_sites", "__return_sites_end", ".return_sites", 4,
       "addr:0:rel32", "arch/x86/kernel/alternative.c:apply_returns"),
    _t("parainstructions", "__parainstructions", "__parainstructions_end", ".parainstructions", 16,
       "instr:0:abs64 type:8:u8 len:9:u8", "arch/x86/kernel/alternative.c:apply_paravirt"),
    _t("smp_locks", "__smp_locks", "__smp_locks_end", ".smp_locks", 4,
       "addr:0:rel32", "arch/x86/kernel/alternative.c:alternatives_smp_lock"),
    _t("ibt_endbr_seal", "__ibt_endbr_seal", "__ibt_endbr_seal_end", ".ibt_endbr_seal", 4,
       "addr:0:rel32", "arch/x86/kernel/alternative.c:apply_seal_endbr"),
)}


# Tables whose entry layout changed after 6.1: (changes.py row, layout), oldest first.
NEWER_LAYOUTS: dict[str, tuple[tuple[str, Table], ...]] = {
    # x86/alternatives: alt_instr.flags (v6.3): `u16 cpuid` became `u32 ft_flags` (cpuid:16 |
    # flags:16 << 16; ALT_FLAG_NOT = bit 0, ALT_FLAG_DIRECT_CALL = bit 1 of flags): 14 bytes.
    "alt_instructions": (("alt-instr-flags", _t(
        "alt_instructions", "__alt_instructions", "__alt_instructions_end", ".altinstructions", 14,
        "instr:0:rel32 repl:4:rel32 cpuid:8:u16 flags:10:u16 instrlen:12:u8 replacementlen:13:u8",
        "arch/x86/kernel/alternative.c:apply_alternatives")),),
    # x86/bug: bug_entry::format (asm/bug.h HAVE_ARCH_BUG_FORMAT on x86-64): a rel32 after bug_addr
    "bug_table": (("bug-entry-format", _t(
        "bug_table", "__start___bug_table", "__stop___bug_table", "__bug_table", 16,
        "addr:0:rel32 format:4:rel32 file:8:rel32 line:12:u16 flags:14:u16", "lib/bug.c:find_bug")),),
}
_ALT_FLAG_NOT = 1 << 0  # 6.3+: flags bit 0; 6.1: ALTINSTR_FLAG_INV, bit 15 of cpuid


def layout_for(table: Table, image: KernelImage | None, version: KernelVersion | None) -> Table:
    """`table`'s row for the kernel of `image` and `version` (the 6.1 row unless a change says otherwise)."""
    chosen = table
    for change, row in NEWER_LAYOUTS.get(table.name, ()):
        if applies(change, image, version).value:
            chosen = row
    return chosen


def read_table(image: KernelImage, table: Table, version: KernelVersion | None = None) -> list[dict[str, int]]:
    """Entries of `table` in `image` (empty if the image has no such table), in the layout of
    `version` (default: the version the image's banner or vermagic names)."""
    if version is None and table.name in NEWER_LAYOUTS:
        version = table_layout_version(image)
    table = layout_for(table, image, version)
    source = image.table_source(table.start, table.stop, table.section)
    if source is None:
        return []
    base, data, targets = source
    entries = []
    for start in range(0, len(data) - table.entry_size + 1, table.entry_size):
        entry = {}
        for f in table.fields:
            field_offset = start + f.offset
            (value,) = struct.unpack_from(_FORMATS[f.kind], data, field_offset)
            if f.kind in _POINTERS:
                if targets is not None:  # a module's field: zero plus a relocation
                    value = targets.get(field_offset) or 0
                elif f.kind is not Kind.ABS64:
                    value = (base + field_offset + value) & 0xFFFF_FFFF_FFFF_FFFF
            entry[f.name] = value
        if "flags" in entry and table.name == "alt_instructions" and entry["flags"] & _ALT_FLAG_NOT:
            entry["cpuid"] |= 1 << 15  # consumers read the 6.1 encoding of ALT_NOT
        entries.append(entry)
    return entries
