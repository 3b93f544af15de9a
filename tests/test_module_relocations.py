"""Differential test: our .ko relocation resolution against angr's loader (CLE).

probelint resolves module relocations itself, against the kernel's own section layout
(`layout_sections`), because CLE lays sections out differently, needs ~5 s for xfs.ko and does
not implement R_X86_64_PC64 (every __jump_table key). CLE is the reference here: for every
relocation of .text against a symbol defined in the module, the target both resolve it to must be
the same (section, offset) once each is mapped back from its own layout.
"""

from __future__ import annotations

import bisect
import importlib.util
import logging
import struct

import pytest

from probelint.image.kernel import open_image
from probelint.image.relocs import R_X86_64_32S, R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32

# Checked before the kernel is downloaded: without the extra there is nothing to compare against.
pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(importlib.util.find_spec("cle") is None,
                                 reason="angr's loader CLE is not installed: pip install 'probelint[reference]' "
                                        "(.ci/run installs it)")]


def test_text_relocations_agree_with_cle(debian):
    import cle  # installed but failing to import (the extra's pins in pyproject.toml) is an error, not a skip

    logging.getLogger("cle").setLevel(logging.ERROR)
    image = open_image(debian.xfs)
    loader = cle.Loader(str(debian.xfs), auto_load_libs=False, main_opts={"base_addr": 0})
    obj = loader.main_object
    cle_sections = sorted((s.vaddr, s.vaddr + s.memsize, s.name) for s in obj.sections if s.memsize and s.vaddr)
    ours = {image.section_address(s): s.name for s in image.elf.sections if s.index in image.layout.section_address}
    our_starts = sorted(ours)

    def ours_to_section(address: int) -> tuple[str, int]:
        start = our_starts[bisect.bisect_right(our_starts, address) - 1]
        return ours[start], address - start

    def cle_to_section(address: int) -> tuple[str, int] | None:
        pos = bisect.bisect_right(cle_sections, (address, float("inf"), "")) - 1
        if pos < 0:
            return None
        lo, hi, name = cle_sections[pos]
        return (name, address - lo) if lo <= address < hi else None

    text = image.elf.section(".text")
    cle_text = next(s for s in obj.sections if s.name == ".text")
    checked = 0
    for reloc in image.relocations.for_section(text.index):
        if reloc.target is None or reloc.type not in (R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_64, R_X86_64_32S):
            continue  # imports resolve to CLE's extern object, not comparable
        where = cle_text.vaddr + reloc.offset
        if reloc.type == R_X86_64_64:
            target = struct.unpack("<Q", loader.memory.load(where, 8))[0]
        elif reloc.type == R_X86_64_32S:
            target = struct.unpack("<i", loader.memory.load(where, 4))[0] & 0xFFFF_FFFF_FFFF_FFFF
        else:
            target = where + struct.unpack("<i", loader.memory.load(where, 4))[0]
        theirs = cle_to_section(target)
        if theirs is None:
            continue
        assert ours_to_section(reloc.target) == theirs, hex(reloc.offset)
        checked += 1
    assert checked > 1000
