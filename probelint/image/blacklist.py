"""The kprobe blacklist as `populate_kprobe_blacklist()` builds it (kernel/kprobes.c)."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from probelint.image.elf import ElfSection
    from probelint.image.view import KernelImage

__all__ = ["Blacklist", "module_areas", "vmlinux_areas"]

# (start, end, what) of an area kprobe_add_area_blacklist() walks
Area = tuple[int, int, str]

# (start marker, end marker, what) of the areas walked by kprobe_add_area_blacklist()
_VMLINUX_AREAS = (
    ("__kprobes_text_start", "__kprobes_text_end", ".kprobes.text"),
    ("__noinstr_text_start", "__noinstr_text_end", "noinstr (.noinstr.text)"),
    ("__entry_text_start", "__entry_text_end", "x86 entry text"),
)
_MODULE_AREAS = (".kprobes.text", ".noinstr.text")  # add_module_kprobe_blacklist()


class Blacklist:
    """Sorted, possibly overlapping [start, end) ranges with the reason each was added."""

    def __init__(self, image: KernelImage, areas: list[Area]) -> None:
        ranges: list[tuple[int, int, str]] = []
        # arch_within_kprobe_blacklist(): the .kprobes.text range itself, checked directly
        for entry in image.table("kprobe_blacklist"):
            sym = image.lookup(entry["addr"])
            if sym is not None and image.is_core_text(entry["addr"]):
                ranges.append((sym.address, sym.end, f"NOKPROBE_SYMBOL({sym.name})"))
        for start, end, what in areas:
            walk = start
            while walk < end:
                sym = image.lookup(walk)
                size = sym.size if sym is not None else 0
                if size:  # kprobe_add_ksym_blacklist adds [entry, entry + size of its symbol)
                    ranges.append((walk, walk + size, f"{what} area"))
                    walk += size
                else:  # the kernel steps byte by byte to the next symbol: one range for the gap
                    nxt = image.symbols.symbols_in(walk + 1, end)
                    stop = nxt[0].address if nxt else end
                    ranges.append((walk, stop, what))
                    walk = stop
        self._set(ranges)

    def _set(self, ranges: list[tuple[int, int, str]]) -> None:
        ranges.sort()
        self._ranges = ranges
        self._starts = [r[0] for r in ranges]
        self._longest = max((e - s for s, e, _ in ranges), default=0)

    @classmethod
    def of_ranges(cls, ranges: list[tuple[int, int, str]]) -> Blacklist:
        """The blacklist of these ranges, as kept in the build-id index."""
        self = cls.__new__(cls)
        self._set(ranges)
        return self

    @property
    def ranges(self) -> list[tuple[int, int, str]]:
        return self._ranges

    def reason(self, address: int) -> str | None:
        pos = bisect.bisect_right(self._starts, address)
        while pos > 0:
            pos -= 1
            start, end, why = self._ranges[pos]
            if start <= address < end:
                return why
            if address - start >= self._longest:
                break
        return None


def vmlinux_areas(vmlinux: KernelImage) -> list[Area]:
    """populate_kprobe_blacklist(): the areas between the vmlinux's markers."""
    out = []
    for lo, hi, what in _VMLINUX_AREAS:
        start, end = vmlinux.raw_symbol(lo), vmlinux.raw_symbol(hi)
        sec = vmlinux.section_at(start) if start is not None else None
        if sec is None or end is None or not start < end:
            continue
        # a sane area lies inside one section; clamp a corrupt one rather than walk it
        out.append((start, min(end, vmlinux.section_address(sec) + sec.size), what))
    return out


def module_areas(module: KernelImage, placed: Callable[[ElfSection], bool]) -> list[Area]:
    """add_module_kprobe_blacklist(): the module's sections of those names that are `placed`."""
    secs = (module.elf.section(name) for name in _MODULE_AREAS)
    return [(module.section_address(s), module.section_address(s) + s.size, s.name)
            for s in secs if s is not None and s.size and placed(s)]
