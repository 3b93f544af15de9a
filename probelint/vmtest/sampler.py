"""Draw probe points from a kernel image, by category, for grading probelint against a booted kernel.

Every sample is a probe spec in kprobe_events target syntax (``SYM+0xOFF``, ``xfs:SYM+0xOFF`` or
``0xADDR``) with a category label saying why it was drawn (see :data:`CATEGORIES`).  Drawing is
deterministic for a given kernel, size and seed.

Probes interact in the kernel: an optimized probe's 5-byte jump (and the instructions it copies,
up to 19 bytes) must not overlap another probe, and two probes at one address aggregate.  So
:func:`plan_batches` orders the samples so that each boot batch (``batch_size`` consecutive
specs, as :func:`probelint.vmtest.run_probes` cuts them) holds at most one probe per function,
and every address is drawn at most once.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import iced_x86

from probelint.arch.x86.cpu import CpuProfile, feature_bits
from probelint.arch.x86.decode import may_hold_indirect_jump
from probelint.arch.x86.patching import ALTINSTR_FLAG_INV
from probelint.image.elf import STT_FUNC
from probelint.image.module_layout import is_init_section

if TYPE_CHECKING:
    from probelint.image.kallsyms import KSym
    from probelint.image.kernel import Function, Image, Kernel
    from probelint.readers.spec import ProbeSpec

T = TypeVar("T")

__all__ = [
    "CATEGORIES",
    "Sample",
    "draw_sample",
    "format_sample_file",
    "kernel_target",
    "parse_sample_file",
    "plan_batches",
    "read_probes",
]

# name -> (weight in the draw, what the category probes); drawn in this order, so an address
# wanted by two categories goes to the first (the specific ones come first).
CATEGORIES: dict[str, tuple[int, str]] = {
    "jump_label": (2, "a jump-label (static key) site"),
    "jump_label_inside": (1, "a byte inside a jump-label site"),
    "jump_label_before": (2, "an instruction boundary 1..4 bytes before a jump-label site"),
    "static_call": (2, "a static-call site"),
    "static_call_before": (2, "an instruction boundary 1..4 bytes before a static-call site"),
    "bug_site": (2, "a BUG()/WARN() ud2 site (__bug_table)"),
    "ex_table_insn": (2, "an instruction with an exception-table entry"),
    "ex_table_fn": (2, "another instruction of a function with exception-table entries"),
    "alternative": (2, "an alternatives site (.altinstructions)"),
    "paravirt": (2, "a paravirt patch site (.parainstructions)"),
    "retpoline_site": (2, "an indirect call/jump through a retpoline thunk (.retpoline_sites)"),
    "retpoline_inside": (1, "byte 1..4 of a retpoline site (boundaries once rewritten to call/jmp *%reg)"),
    "retpoline_before": (1, "an instruction boundary 1..4 bytes before a retpoline site"),
    "alternative_feature": (2, "at, inside or 1..4 bytes before an alternatives site whose feature differs "
                               "between the QEMU models' CPU profiles"),
    "return_site": (2, "a 'jmp __x86_return_thunk' (.return_sites)"),
    "jump_into_window": (3, "a boundary P with a jump in the function to P+1..P+5"),
    "indirect_jump_fn": (1, "a boundary in a function with an indirect jump (ff /4, ff /5)"),
    "thunk_jump_fn": (2, "a boundary in a function that jumps to a retpoline thunk"),
    "nokprobe": (2, "a NOKPROBE_SYMBOL function (+0 or a boundary)"),
    "noinstr": (2, "a function in .noinstr.text"),
    "entry_text": (1, "a function in the x86 entry text"),
    "init_text": (2, "a function in init text (freed after boot)"),
    "duplicate_name": (1, "a function whose name kallsyms holds more than once"),
    "cold_part": (2, "a .cold/.part/.isra/.constprop piece"),
    "notrace": (3, "a boundary in a function with no fentry site"),
    "last_insn": (2, "the last instruction before the function's trailing padding"),
    "padding": (2, "a boundary in the trailing int3/nop padding of a function"),
    "entry": (3, "function entry (+0)"),
    "entry_plus4": (1, "function +4: inside the fentry call, or the entry itself after an IBT ENDBR"),
    "return_entry": (1, "a return probe on a function entry (SYM%return, SYM+4%return)"),
    "exception_insn": (1, "an int3/ud2/int n instruction that is no BUG site"),
    "mid_insn": (3, "an offset inside a multi-byte instruction"),
    "boundary": (6, "a random instruction boundary (not +0)"),
    "address": (1, "a raw-address probe (0xADDR) at a boundary"),
    "module": (4, "a random boundary in a module function (MOD:SYM+OFF)"),
    "module_entry": (2, "a module function entry (MOD:SYM+0)"),
    # weight 0: drawn only when named (--category), so that a default draw stays what it was
    "module_jump_label": (0, "a jump-label site in a module's text"),
    "module_jump_label_inside": (0, "a byte inside a module's jump-label site"),
    "module_static_call": (0, "a static-call site in a module's text"),
    "module_paravirt": (0, "at or inside a module's paravirt site (.parainstructions, patched from pv_ops)"),
    "module_init_text": (0, "a module's .init.text function (MOD:SYM)"),
    "module_exit_text": (0, "a module's .exit.text function (MOD:SYM)"),
    "module_duplicate_name": (0, "a name a module's text shares with the vmlinux or another module, written "
                                 "plain (SYM) and as MOD:SYM"),
}
_MODULE_CATEGORIES = frozenset(c for c in CATEGORIES if c.startswith("module"))
_PIECE_RE = re.compile(r"\.(cold|part|isra|constprop)(\.|$)")
_SITE_BEFORE = 4  # "before" probes start 1..4 bytes before a site: their 5-byte window covers it


@dataclass(frozen=True, slots=True)
class Sample:
    """One probe to run: the spec, why it was drawn, and its function (``IMAGE:0xADDR``)."""

    spec: str
    category: str
    function: str
    note: str = ""


class _Drawer:
    def __init__(self, kernel: Kernel, rng: random.Random) -> None:
        assert kernel.vmlinux is not None, "the sampler needs a vmlinux"
        self.kernel = kernel
        self.vm: Image = kernel.vmlinux
        self.rng = rng
        self.used: set[tuple[str, int]] = set()
        vm = self.vm
        stext, etext = vm.raw_symbol("_stext"), vm.raw_symbol("_etext")
        assert stext is not None and etext is not None
        # __pfx_/__cfi_ padding (6.2+) would otherwise be a large share of every category
        self.text_funcs = [s for s in vm.symbols.symbols_in(stext, etext) if s.type in "tTwW" and s.size > 0
                           and not s.name.startswith(("__pfx_", "__cfi_"))]
        self.unique_funcs = [s for s in self.text_funcs if kernel.count(s.name) == 1]

    # ------------------------------------------------------------------ helpers

    def spec_at(self, image: Image, address: int, *, unique: bool = True) -> tuple[str, KSym] | None:
        """``[MOD:]SYM+0xOFF`` naming `address` by its containing kallsyms symbol."""
        sym = image.lookup(address)
        if sym is None or sym.size <= 0 or (unique and self.kernel.count(sym.name) != 1):
            return None
        prefix = f"{image.name}:" if image.is_module else ""
        return f"{prefix}{sym.name}+{address - sym.address:#x}", sym

    def take(self, image: Image, address: int, category: str, note: str = "", *,
             unique: bool = True, raw_address: bool = False) -> Sample | None:
        key = (image.name, address)
        if key in self.used:
            return None
        found = self.spec_at(image, address, unique=unique)
        if found is None:
            return None
        spec, sym = found
        if raw_address:
            spec = f"{address:#x}"
        self.used.add(key)
        return Sample(spec, category, f"{image.name}:{sym.address:#x}", note)

    def shuffled(self, items: Iterable) -> list:
        out = list(items)
        self.rng.shuffle(out)
        return out

    def scan(self) -> Iterator[Function]:
        """Decoded unique-named core-text functions, in the current category's random order."""
        for sym in self.shuffled(self.unique_funcs):
            yield self.vm.function(sym)

    def core_site(self, address: int) -> bool:
        return self.vm.is_core_text(address) and not self.vm.is_init_text(address)

    @staticmethod
    def boundaries(fn: Function, *, skip_entry: bool = True) -> list[int]:
        return [i.address for i in fn.insns[1 if skip_entry else 0 :] if i.valid]

    def random_boundary(self, image: Image, sym: KSym, category: str, *, skip_entry: bool = True,
                        unique: bool = True, raw_address: bool = False) -> Sample | None:
        fn = image.function(sym)
        cands = self.boundaries(fn, skip_entry=skip_entry)
        for addr in self.shuffled(cands)[:4]:
            s = self.take(image, addr, category, unique=unique, raw_address=raw_address)
            if s is not None:
                return s
        return None

    def from_functions(self, image: Image, syms: Iterable[KSym], category: str, k: int, *,
                       skip_entry: bool = True, unique: bool = True, raw_address: bool = False) -> list[Sample]:
        out: list[Sample] = []
        for sym in syms:
            if len(out) >= k:
                break
            s = self.random_boundary(image, sym, category, skip_entry=skip_entry, unique=unique,
                                     raw_address=raw_address)
            if s is not None:
                out.append(s)
        return out

    @staticmethod
    def first_k(candidates: Iterable[T], k: int, pick: Callable[[T], Sample | None]) -> list[Sample]:
        """The first `k` samples `pick` makes of `candidates`, in order (it may decline one)."""
        out: list[Sample] = []
        for candidate in candidates:
            if len(out) >= k:
                break
            sample = pick(candidate)
            if sample is not None:
                out.append(sample)
        return out

    def from_sites(self, addresses: Iterable[int], category: str, k: int) -> list[Sample]:
        return self.first_k(self.shuffled(set(addresses)), k,
                            lambda addr: self.take(self.vm, addr, category) if self.core_site(addr) else None)

    def before_sites(self, addresses: Iterable[int], category: str, k: int) -> list[Sample]:
        """A boundary 1.._SITE_BEFORE bytes before each site, in the site's own function."""
        out: list[Sample] = []
        for site in self.shuffled(set(addresses)):
            if len(out) >= k:
                break
            if not self.core_site(site):
                continue
            sym = self.vm.lookup(site)
            if sym is None:
                continue
            fn = self.vm.function(sym)
            cands = [a for a in self.boundaries(fn, skip_entry=False) if 1 <= site - a <= _SITE_BEFORE]
            for addr in self.shuffled(cands):
                s = self.take(self.vm, addr, category, note=f"site {self.vm.describe(site)}")
                if s is not None:
                    out.append(s)
                    break
        return out

    def in_range(self, lo_name: str, hi_name: str) -> list[KSym]:
        lo, hi = self.vm.raw_symbol(lo_name), self.vm.raw_symbol(hi_name)
        if lo is None or hi is None:
            return []
        return [s for s in self.vm.symbols.symbols_in(lo, hi) if s.size > 0 and self.kernel.count(s.name) == 1]

    # ------------------------------------------------------------------ categories

    def jump_label(self, k: int) -> list[Sample]:
        return self.from_sites((e["code"] for e in self.vm.table("jump_table")), "jump_label", k)

    def inside(self, image: Image, site: int, category: str) -> Sample | None:
        """A byte inside the instruction that starts at `site` (None if none does)."""
        sym = image.lookup(site)
        insn = image.function(sym).insn_at_or_before(site) if sym is not None else None
        if insn is None or insn.address != site or insn.length < 2:
            return None
        return self.take(image, site + self.rng.randrange(1, insn.length), category)

    def jump_label_inside(self, k: int) -> list[Sample]:
        return self.first_k(self.shuffled({e["code"] for e in self.vm.table("jump_table")}), k,
                            lambda site: self.inside(self.vm, site, "jump_label_inside") if self.core_site(site)
                            else None)

    def jump_label_before(self, k: int) -> list[Sample]:
        return self.before_sites((e["code"] for e in self.vm.table("jump_table")), "jump_label_before", k)

    def static_call(self, k: int) -> list[Sample]:
        return self.from_sites((e["addr"] for e in self.vm.table("static_call_sites")), "static_call", k)

    def static_call_before(self, k: int) -> list[Sample]:
        return self.before_sites((e["addr"] for e in self.vm.table("static_call_sites")), "static_call_before", k)

    def bug_site(self, k: int) -> list[Sample]:
        return self.from_sites((e["addr"] for e in self.vm.table("bug_table")), "bug_site", k)

    def ex_table_insn(self, k: int) -> list[Sample]:
        return self.from_sites((e["insn"] for e in self.vm.table("ex_table")), "ex_table_insn", k)

    def ex_table_fn(self, k: int) -> list[Sample]:
        fsyms = {}
        for e in self.vm.table("ex_table"):
            sym = self.vm.lookup(e["insn"]) if self.core_site(e["insn"]) else None
            if sym is not None and self.kernel.count(sym.name) == 1:
                fsyms[sym.address] = sym
        sites = {e["insn"] for e in self.vm.table("ex_table")}
        out: list[Sample] = []
        for sym in self.shuffled(fsyms.values()):
            if len(out) >= k:
                break
            cands = [a for a in self.boundaries(self.vm.function(sym)) if a not in sites]
            for addr in self.shuffled(cands)[:4]:
                s = self.take(self.vm, addr, "ex_table_fn")
                if s is not None:
                    out.append(s)
                    break
        return out

    def alternative(self, k: int) -> list[Sample]:
        return self.from_sites((e["instr"] for e in self.vm.table("alt_instructions") if e["instrlen"]),
                               "alternative", k)

    def paravirt(self, k: int) -> list[Sample]:
        return self.from_sites((e["instr"] for e in self.vm.table("parainstructions")), "paravirt", k)

    def retpoline_site(self, k: int) -> list[Sample]:
        return self.from_sites((e["addr"] for e in self.vm.table("retpoline_sites")), "retpoline_site", k)

    def retpoline_inside(self, k: int) -> list[Sample]:
        return self.first_k(self.shuffled({e["addr"] for e in self.vm.table("retpoline_sites")}), k,
                            lambda site: self.take(self.vm, site + self.rng.randrange(1, 5), "retpoline_inside")
                            if self.core_site(site) else None)

    def retpoline_before(self, k: int) -> list[Sample]:
        return self.before_sites((e["addr"] for e in self.vm.table("retpoline_sites")), "retpoline_before", k)

    def alternative_feature(self, k: int) -> list[Sample]:
        """Any byte from 4 before a site to its end: the live boundaries there depend on the CPU."""
        profiles = (CpuProfile.QEMU64, CpuProfile.EPYC_ROME, CpuProfile.SKYLAKE_CLIENT_V4)
        bits = [feature_bits(self.vm, p) for p in profiles]
        out: list[Sample] = []
        for e in self.shuffled(self.vm.table("alt_instructions")):
            if len(out) >= k:
                break
            feature = e["cpuid"] & ~ALTINSTR_FLAG_INV
            if not e["instrlen"] or len({feature in b for b in bits}) == 1 or not self.core_site(e["instr"]):
                continue
            addr = e["instr"] + self.rng.randrange(-_SITE_BEFORE, e["instrlen"])
            if self.vm.lookup(addr) == self.vm.lookup(e["instr"]):
                s = self.take(self.vm, addr, "alternative_feature", note=f"site {self.vm.describe(e['instr'])}")
                if s is not None:
                    out.append(s)
        return out

    def return_site(self, k: int) -> list[Sample]:
        return self.from_sites((e["addr"] for e in self.vm.table("return_sites")), "return_site", k)

    def jump_into_window(self, k: int) -> list[Sample]:
        """KP206's boundaries: a branch of the function into P+1..P+5."""
        out: list[Sample] = []
        for fn in self.scan():
            if len(out) >= k:
                break
            cands = [p for p in fn.starts[1:] if fn.branch_into_window(p) is not None]
            for addr in self.shuffled(cands)[:1]:
                s = self.take(self.vm, addr, "jump_into_window")
                if s is not None:
                    out.append(s)
        return out

    def _functions_with(self, pred: Callable[[Function], bool], category: str, k: int, limit: int) -> list[Sample]:
        out: list[Sample] = []
        for n, fn in enumerate(self.scan()):
            if len(out) >= k or n >= limit:
                break
            if pred(fn):
                s = self.random_boundary(self.vm, fn.symbol, category)
                if s is not None:
                    out.append(s)
        return out

    def indirect_jump_fn(self, k: int) -> list[Sample]:
        """KP205's indirect jumps (`insn_is_indirect_jump` without the thunk range)."""
        out: list[Sample] = []
        for sym in self.shuffled(self.unique_funcs):  # a byte prefilter: decoding everything is slow
            if len(out) >= k:
                break
            if may_hold_indirect_jump(self.vm.read(sym.address, sym.size)) and self.vm.function(sym).indirect_jumps:
                smp = self.random_boundary(self.vm, sym, "indirect_jump_fn")
                if smp is not None:
                    out.append(smp)
        return out

    def thunk_jump_fn(self, k: int) -> list[Sample]:
        """KP205's jumps into the thunk range (6.1's `insn_is_indirect_jump` with RETPOLINE)."""
        thunks = self.kernel.thunk_range
        if thunks is None:
            return []
        return self._functions_with(lambda fn: fn.branch_into(*thunks) is not None, "thunk_jump_fn", k,
                                    len(self.unique_funcs))

    def nokprobe(self, k: int) -> list[Sample]:
        syms = {}
        for e in self.vm.table("kprobe_blacklist"):
            sym = self.vm.lookup(e["addr"]) if self.core_site(e["addr"]) else None
            if sym is not None and sym.size > 0 and self.kernel.count(sym.name) == 1:
                syms[sym.address] = sym
        out: list[Sample] = []
        for sym in self.shuffled(syms.values()):
            if len(out) >= k:
                break
            s = self.random_boundary(self.vm, sym, "nokprobe", skip_entry=self.rng.random() < 0.5)
            if s is not None:
                out.append(s)
        return out

    def noinstr(self, k: int) -> list[Sample]:
        return self.from_functions(self.vm, self.shuffled(self.in_range("__noinstr_text_start", "__noinstr_text_end")),
                                   "noinstr", k, skip_entry=False)

    def entry_text(self, k: int) -> list[Sample]:
        return self.from_functions(self.vm, self.shuffled(self.in_range("__entry_text_start", "__entry_text_end")),
                                   "entry_text", k, skip_entry=False)

    def init_text(self, k: int) -> list[Sample]:
        syms = [s for s in self.in_range("_sinittext", "_einittext") if s.type in "tTwW"]
        return self.from_functions(self.vm, self.shuffled(syms), "init_text", k, skip_entry=False)

    def duplicate_name(self, k: int) -> list[Sample]:
        dups = [s for s in self.text_funcs if self.kernel.count(s.name) > 1]
        out: list[Sample] = []
        for sym in self.shuffled(dups):
            if len(out) >= k:
                break
            fn = self.vm.function(sym)
            addr = self.rng.choice(self.boundaries(fn, skip_entry=False) or [sym.address])
            key = (self.vm.name, addr)
            if key in self.used:
                continue
            self.used.add(key)
            out.append(Sample(f"{sym.name}+{addr - sym.address:#x}", "duplicate_name",
                              f"{self.vm.name}:{sym.address:#x}", f"{self.kernel.count(sym.name)} symbols"))
        return out

    def cold_part(self, k: int) -> list[Sample]:
        pieces = [s for s in self.unique_funcs if _PIECE_RE.search(s.name)]
        return self.from_functions(self.vm, self.shuffled(pieces), "cold_part", k, skip_entry=self.rng.random() < 0.7)

    def notrace(self, k: int) -> list[Sample]:
        def pick(fn: Function) -> Sample | None:
            sym = fn.symbol
            if self.vm.ftrace_site_in(sym.address, sym.end) is None and self.core_site(sym.address):
                return self.random_boundary(self.vm, sym, "notrace", skip_entry=False)
            return None

        return self.first_k(self.scan(), k, pick)

    @staticmethod
    def _padding_start(fn: Function) -> int | None:
        """Index of the first insn of the trailing int3/nop run (None if there is none)."""
        pos = len(fn.insns)
        while pos > 0:
            d = fn.insns[pos - 1].decoded
            if d is None or d.mnemonic not in (iced_x86.Mnemonic.INT3, iced_x86.Mnemonic.NOP):
                break
            pos -= 1
        return pos if pos < len(fn.insns) else None

    def last_insn(self, k: int) -> list[Sample]:
        def pick(fn: Function) -> Sample | None:
            pad = self._padding_start(fn)
            idx = (pad if pad is not None else len(fn.insns)) - 1
            return self.take(self.vm, fn.insns[idx].address, "last_insn") if idx >= 1 and fn.insns[idx].valid else None

        return self.first_k(self.scan(), k, pick)

    def padding(self, k: int) -> list[Sample]:
        def pick(fn: Function) -> Sample | None:
            pad = self._padding_start(fn)
            if pad is None or pad < 1:
                return None
            return self.take(self.vm, self.rng.choice([i.address for i in fn.insns[pad:]]), "padding")

        return self.first_k(self.scan(), k, pick)

    def entry(self, k: int) -> list[Sample]:
        syms = self.rng.sample(self.unique_funcs, min(len(self.unique_funcs), 3 * k))
        return self.first_k(syms, k, lambda sym: self.take(self.vm, sym.address, "entry"))

    def entry_plus4(self, k: int) -> list[Sample]:
        def pick(sym: KSym) -> Sample | None:
            if sym.size > 8 and self.vm.ftrace_site_in(sym.address, sym.end) is not None:
                return self.take(self.vm, sym.address + 4, "entry_plus4")
            return None

        return self.first_k(self.rng.sample(self.unique_funcs, min(len(self.unique_funcs), 3 * k)), k, pick)

    def return_entry(self, k: int) -> list[Sample]:
        out: list[Sample] = []
        for sym in self.rng.sample(self.unique_funcs, min(len(self.unique_funcs), 3 * k)):
            if len(out) >= k:
                break
            if sym.size <= 8 or (self.vm.name, sym.address) in self.used:
                continue
            self.used.add((self.vm.name, sym.address))
            offset = "+4" if len(out) % 2 else ""  # +4 is an entry only after an IBT ENDBR
            out.append(Sample(f"{sym.name}{offset}%return", "return_entry", f"{self.vm.name}:{sym.address:#x}"))
        return out

    def exception_insn(self, k: int) -> list[Sample]:
        from probelint.arch.x86 import decode as x86

        out: list[Sample] = []
        for fn in self.scan():
            if len(out) >= k:
                break
            hits = [i for i in fn.insns if i.address != fn.symbol.address and x86.is_exception_insn(i)
                    and i.address not in self.vm.bug_sites]
            if hits:
                s = self.take(self.vm, self.rng.choice(hits).address, "exception_insn")
                if s is not None:
                    out.append(s)
        return out

    def mid_insn(self, k: int) -> list[Sample]:
        def pick(fn: Function) -> Sample | None:
            multi = [i for i in fn.insns if i.length > 1 and i.valid]
            if not multi:
                return None
            insn = self.rng.choice(multi)
            return self.take(self.vm, insn.address + self.rng.randrange(1, insn.length), "mid_insn")

        return self.first_k(self.scan(), k, pick)

    def boundary(self, k: int) -> list[Sample]:
        syms = self.rng.sample(self.unique_funcs, min(len(self.unique_funcs), 3 * k))
        return self.from_functions(self.vm, syms, "boundary", k)

    def address(self, k: int) -> list[Sample]:
        syms = self.rng.sample(self.text_funcs, min(len(self.text_funcs), 3 * k))
        return self.from_functions(self.vm, syms, "address", k, unique=False, raw_address=True)

    def _module_funcs(self) -> list[tuple[Image, KSym]]:
        out = []
        for mod in self.kernel.modules:
            lay = mod.layout
            assert lay is not None
            out += [(mod, s) for s in mod.symbols.symbols_in(lay.text_start, lay.text_end)
                    if s.type in "tTwW" and s.size > 0 and self.kernel.count(s.name) == 1]
        return out

    def module(self, k: int) -> list[Sample]:
        return self.first_k(self.shuffled(self._module_funcs()), k,
                            lambda mod_sym: self.random_boundary(*mod_sym, "module"))

    def module_entry(self, k: int) -> list[Sample]:
        return self.first_k(self.shuffled(self._module_funcs()), k,
                            lambda mod_sym: self.take(mod_sym[0], mod_sym[1].address, "module_entry"))

    def _module_sites(self, table: str, field: str) -> list[tuple[Image, int]]:
        """(module, address) of each entry of `table` in a module's core text."""
        return [(mod, e[field]) for mod in self.kernel.modules for e in mod.table(table)
                if mod.layout.text_start <= e[field] < mod.layout.text_end and not mod.is_init_text(e[field])]

    def module_jump_label(self, k: int) -> list[Sample]:
        return self.first_k(self.shuffled(self._module_sites("jump_table", "code")), k,
                            lambda site: self.take(*site, "module_jump_label"))

    def module_jump_label_inside(self, k: int) -> list[Sample]:
        return self.first_k(self.shuffled(self._module_sites("jump_table", "code")), k,
                            lambda site: self.inside(*site, "module_jump_label_inside"))

    def module_static_call(self, k: int) -> list[Sample]:
        return self.first_k(self.shuffled(self._module_sites("static_call_sites", "addr")), k,
                            lambda site: self.take(*site, "module_static_call"))

    def module_paravirt(self, k: int) -> list[Sample]:
        return self.first_k(self.shuffled(self._module_sites("parainstructions", "instr")), k,
                            lambda site: self.inside(*site, "module_paravirt") if self.rng.random() < 0.5
                            else self.take(*site, "module_paravirt"))

    def _module_section_funcs(self, is_section: Callable[[str], bool], category: str, k: int) -> list[Sample]:
        """``MOD:SYM`` of functions defined in the module sections `is_section` names (symbols the
        module's kallsyms may not keep: written by name, not by address)."""
        found = []
        for mod in self.kernel.modules:
            sections = mod.elf.sections
            found += [(mod, s.name) for s in mod.elf.symbols() if s.type == STT_FUNC and s.name and 0 < s.shndx
                      < len(sections) and is_section(sections[s.shndx].name) and not s.name.startswith("__")]
        out = []
        for mod, name in self.shuffled(sorted(set(found), key=lambda f: (f[0].name, f[1])))[:k]:
            if (mod.name, name) not in self.used:
                self.used.add((mod.name, name))
                out.append(Sample(f"{mod.name}:{name}", category, f"{mod.name}:{name}"))
        return out

    def module_duplicate_name(self, k: int) -> list[Sample]:
        """Pairs: the plain name (counted by number_of_same_symbols: the vmlinux first from 7.1,
        KP102) and the same name as MOD:SYM (counted in MOD alone from 6.12)."""
        holders: dict[str, list[str]] = {}
        for mod in self.kernel.modules:
            lo, hi = mod.layout.text_start, mod.layout.text_end
            for address, name in zip(mod.symbols.addresses, mod.symbols.names, strict=True):
                if lo <= address < hi and not name.startswith("__"):
                    holders.setdefault(name, []).append(mod.name)
        shared = sorted(n for n, mods in holders.items() if len(set(mods)) > 1 or self.vm.symbols.count(n))
        out: list[Sample] = []
        for name in self.shuffled(shared)[: max(1, k // 2)]:
            where = f"{holders[name][0]}:{name}"
            out += [Sample(name, "module_duplicate_name", where, "plain"),
                    Sample(where, "module_duplicate_name", where, "MOD:SYM")]
        return out

    def module_init_text(self, k: int) -> list[Sample]:
        return self._module_section_funcs(is_init_section, "module_init_text", k)

    def module_exit_text(self, k: int) -> list[Sample]:
        return self._module_section_funcs(lambda name: name.startswith(".exit.text"), "module_exit_text", k)


def draw_sample(kernel: Kernel, n: int, seed: int = 0, *, categories: Iterable[str] | None = None) -> list[Sample]:
    """About `n` probes from `kernel` (a vmlinux, optionally with modules), spread over `categories`
    by their weights; a category short of candidates leaves its share to ``boundary``."""
    wanted = [c for c in (categories or CATEGORIES) if c in CATEGORIES and (categories or CATEGORIES[c][0])]
    unknown = set(categories or ()) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown sample categories: {', '.join(sorted(unknown))}")
    if not kernel.modules:
        wanted = [c for c in wanted if c not in _MODULE_CATEGORIES]
    weight = {c: CATEGORIES[c][0] or 1 for c in wanted}  # a category named with weight 0 counts as 1
    total_weight = sum(weight.values()) or 1
    quota = {c: max(1, round(n * weight[c] / total_weight)) for c in wanted}
    d = _Drawer(kernel, random.Random(seed))
    samples: list[Sample] = []
    short = 0
    for cat in wanted:
        if cat == "boundary":
            continue
        # a fresh, category-specific stream: adding a category does not reshuffle the others
        d.rng = random.Random(f"{seed}:{cat}")
        got = getattr(d, cat)(quota[cat])
        short += quota[cat] - len(got)
        samples += got
    if "boundary" in wanted:
        d.rng = random.Random(f"{seed}:boundary")
        samples += d.boundary(max(0, quota["boundary"] + short))
    seen: set[str] = set()
    unique = []
    for s in samples:  # two equal names may yield the same spec
        if s.spec not in seen:
            seen.add(s.spec)
            unique.append(s)
    return unique


def plan_batches(samples: list[Sample], batch_size: int) -> list[Sample]:
    """Reorder `samples` so that each run of `batch_size` consecutive ones has distinct functions.

    Greedy first fit; the order within a batch follows the input order.  Batches are filled to
    `batch_size` before a new one is opened, so the number of boots is minimal unless one
    function has more samples than there are batches.
    """
    batches: list[list[Sample]] = []
    funcs: list[set[str]] = []
    for s in samples:
        for b, f in zip(batches, funcs, strict=True):
            if len(b) < batch_size and s.function not in f:
                b.append(s)
                f.add(s.function)
                break
        else:
            batches.append([s])
            funcs.append({s.function})
    return [s for b in batches for s in b]


def format_sample_file(samples: list[Sample], header: str = "") -> str:
    """A probe file (``SPEC  # category [function] note`` per line) that :func:`parse_sample_file` reads back."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    width = max((len(s.spec) for s in samples), default=0)
    for s in samples:
        note = f" {s.note}" if s.note else ""
        lines.append(f"{s.spec:<{width}}  # {s.category} [{s.function}]{note}")
    return "\n".join(lines) + "\n"


_LINE_RE = re.compile(r"^(?P<spec>[^#]*?)\s*(?:#\s*(?P<cat>[\w-]+)?\s*(?:\[(?P<fn>[^\]]*)\])?\s*(?P<note>.*))?$")


def parse_sample_file(text: str) -> list[Sample]:
    """Read a probe file: one spec per line, ``# category [function] note`` optional (category ``-``)."""
    out = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#") or raw.strip() == "---":
            continue
        m = _LINE_RE.match(raw.strip())
        assert m is not None
        spec = m.group("spec").strip()
        if not spec:
            continue
        cat = m.group("cat") if m.group("cat") in CATEGORIES else "-"
        out.append(Sample(spec, cat, m.group("fn") or spec, (m.group("note") or "").strip()))
    return out


_PHASE_BREAK = re.compile(r"(?m)^[ \t]*---[ \t]*(?:#.*)?$")


def kernel_target(spec: ProbeSpec) -> str:
    """The probe as a kprobe_events body both sides read alike: the reader's canonical target
    (``p:grp/ev kfree+0x3 ptr=%di`` -> ``kfree+0x3``, ``kprobe:ext4_file_write_iter`` ->
    ``ext4_file_write_iter``), a return probe at an offset as ``r:SYM+OFF`` (``%return`` takes no
    offset in the canonical form)."""
    if spec.is_return and spec.offset and spec.symbol is not None:
        head = f"{spec.module}:{spec.symbol}" if spec.module else spec.symbol
        return f"r:{head}+{spec.offset:#x}"
    return spec.canonical


def read_probes(paths: list[str], kernel: Kernel | None = None, source_type: str | None = None,
                skipped: Callable[[str], None] | None = None) -> tuple[list[Sample], list[list[int]] | None]:
    """The probes of probe files read as the linter reads them (probelint.readers: every syntax
    and file kind it takes), each as its kprobe_events target (`kernel_target`); a saved sample's
    ``# category [function] note`` is kept, and ``---`` lines split a plain list into phases.
    Wildcards and perf source lines are placed against `kernel` (left out without one); what no
    reader places is left out, told to `skipped`."""
    from probelint.pipeline import read_texts
    from probelint.readers import extract
    from probelint.readers.spec import ProbeSpec
    from probelint.resolve import expand_globs, resolve_source_lines

    samples: list[Sample] = []
    phases: list[list[int]] = [[]]
    for path, text in read_texts(paths).items():
        for n, chunk in enumerate(_PHASE_BREAK.split(text)):
            if n:
                phases.append([])
            parsed = list(extract(path, chunk, source_type))
            if kernel is not None:
                parsed = expand_globs(kernel, resolve_source_lines(kernel, parsed))
            lines = chunk.splitlines()
            for item in parsed:
                if not isinstance(item, ProbeSpec) or item.is_glob:
                    if skipped is not None:
                        skipped(f"{path}: {getattr(item, 'text', item)!s}: not a probe the kernel can be asked about")
                    continue
                line = item.location.line
                m = _LINE_RE.match(lines[line - 1].strip()) if 0 < line <= len(lines) else None
                cat = m.group("cat") if m is not None and m.group("cat") in CATEGORIES else "-"
                target = kernel_target(item)
                fn = (m.group("fn") if m is not None else None) or target
                phases[-1].append(len(samples))
                samples.append(Sample(target, cat, fn, ((m.group("note") or "") if m is not None else "").strip()))
    return samples, (phases if len(phases) > 1 else None)
