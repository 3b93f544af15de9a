"""The kernel as the probes will see it: a vmlinux plus the modules loaded beside it.

Name lookups follow kernel/kallsyms.c `kallsyms_lookup_name` (vmlinux first, then modules in
load order; ``MOD:SYM`` only in that module) and address lookups `kallsyms_lookup_size_offset`
(vmlinux when `is_ksym_addr`, else the module whose text contains the address).
"""

from __future__ import annotations

import bisect
import pickle
from array import array
from collections.abc import Callable, Sequence
from functools import cached_property
from itertools import accumulate
from pathlib import Path
from typing import overload

from probelint.arch import x86
from probelint.errors import InputError
from probelint.image.blacklist import Blacklist
from probelint.image.cache import IndexCache
from probelint.image.elf import ElfFile, ElfSection
from probelint.image.facts import FactStore, FunctionFacts
from probelint.image.kallsyms import Kallsyms, KSym, NameMap, kallsyms_from_vmlinux
from probelint.image.module import MODULE_BASE, ModuleLayout, ModuleSymbols, layout_module, modinfo, module_name
from probelint.image.relocs import RelocTable, apply_relocations
from probelint.image.runtime import DEFAULT_PROFILE, CpuProfile, patch_live_text
from probelint.image.tables import TABLES, read_table
from probelint.image.version import KernelConfig, KernelVersion, detect_version, infer_config
from probelint.progress import progress

__all__ = ["Function", "Image", "Kernel", "LazyInsns", "open_image"]


class LazyInsns(Sequence[x86.Insn]):
    """A function's instructions at known starts, each decoded the first time it is read."""

    def __init__(self, code: bytes, address: int, starts: list[int]) -> None:
        self._code, self._address, self._starts = code, address, starts
        self._decoded: dict[int, x86.Insn] = {}
        self._decoder: x86.Decoder | None = None

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, index: int) -> x86.Insn: ...
    @overload
    def __getitem__(self, index: slice) -> list[x86.Insn]: ...

    def __getitem__(self, index: int | slice) -> x86.Insn | list[x86.Insn]:
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self._starts)))]
        if index < 0:
            index += len(self._starts)
        insn = self._decoded.get(index)
        if insn is None:
            if not 0 <= index < len(self._starts):
                raise IndexError(index)
            if self._decoder is None:
                self._decoder = x86.decoder(self._code, self._address)
            insn = self._decoded[index] = x86.decode_at(self._decoder, self._code, self._starts[index] - self._address,
                                                       self._address)
        return insn


class Function:
    """A kallsyms symbol decoded linearly from its start, as `can_probe`/`can_optimize` walk it.

    Built from `FunctionFacts` (cached per build-id) and the live bytes: the boundaries, branch
    targets and indirect jumps come from the facts, instructions are decoded when read."""

    def __init__(self, symbol: KSym, facts: FunctionFacts, code: bytes,
                 insns: Sequence[x86.Insn] | None = None) -> None:
        self.symbol = symbol
        self.facts = facts
        self.starts: list[int] = list(accumulate(facts.lengths[:-1], initial=symbol.address)) if facts.lengths else []
        self.insns: Sequence[x86.Insn] = insns if insns is not None else LazyInsns(code, symbol.address, self.starts)

    def is_boundary(self, address: int) -> bool:
        pos = bisect.bisect_left(self.starts, address)
        return pos < len(self.starts) and self.starts[pos] == address

    def insn_at_or_before(self, address: int) -> x86.Insn | None:
        pos = bisect.bisect_right(self.starts, address) - 1
        return self.insns[pos] if pos >= 0 else None

    def insn_after(self, address: int) -> x86.Insn | None:
        pos = bisect.bisect_right(self.starts, address)
        return self.insns[pos] if pos < len(self.insns) else None

    @cached_property
    def branches(self) -> list[tuple[int, x86.Insn]]:
        """(target, insn) of every jmp/jcc/loop/jcxz (`insn_jump_into_range` kinds), by target."""
        return [(target, self.insns[k]) for target, k in self.facts.branches]

    def branch_into(self, lo: int, hi: int) -> tuple[int, x86.Insn] | None:
        """The first branch (lowest target) with lo <= target <= hi."""
        branches = self.facts.branches
        pos = bisect.bisect_left(branches, lo, key=lambda p: p[0])
        if pos < len(branches) and branches[pos][0] <= hi:
            return branches[pos][0], self.insns[branches[pos][1]]
        return None

    def first_in(self, addresses: list[int]) -> x86.Insn | None:
        """The first instruction whose address is in sorted `addresses` (e.g. the exception table)."""
        start = self.symbol.address
        pos = bisect.bisect_left(addresses, start)
        while pos < len(addresses) and addresses[pos] < self.symbol.end:
            if self.is_boundary(addresses[pos]):
                return self.insn_at_or_before(addresses[pos])
            pos += 1
        return None

    @cached_property
    def indirect_jumps(self) -> list[x86.Insn]:
        return [self.insns[k] for k in self.facts.indirect_jumps]

    @property
    def undecodable(self) -> x86.Insn | None:
        """The instruction where the kernel's walk gives up, if any."""
        return self.insns[-1] if self.facts.undecodable else None


class Image:
    """One ELF: a vmlinux (ET_EXEC) or a module (ET_REL), with its kallsyms view."""

    def __init__(self, elf: ElfFile, cache: IndexCache | None = None, module_slot: int = 0) -> None:
        self.elf = elf
        self.path = elf.path
        self.is_module = elf.is_relocatable
        # each module gets its own stretch of the module area, as the kernel's allocator gives it
        base = MODULE_BASE + module_slot * MODULE_SLOT_SIZE
        self.layout: ModuleLayout | None = layout_module(elf, base) if self.is_module else None
        self.name = module_name(elf) if self.is_module else "vmlinux"
        # (start, end, section) of every allocated section, by address
        placed = []
        for sec in elf.sections:
            if not sec.is_alloc or sec.size == 0:
                continue
            start = self.layout.section_address.get(sec.index) if self.layout else sec.address
            # vmlinux per-CPU data is linked at 0: it is not kernel text or data at run time.
            if start is not None and (self.is_module or start != 0):
                placed.append((start, start + sec.size, sec))
        placed.sort(key=lambda p: (p[0], p[1]))
        self._placed = placed
        self._starts = [p[0] for p in placed]
        self._functions: dict[tuple[int, CpuProfile], Function] = {}
        self._facts: FactStore | None = None
        self._tables: dict[str, list[dict[str, int]]] = {}
        self._indexed_tables: dict[str, bytes] = {}
        self._sites: dict[str, list[tuple[int, int]]] = {}
        self.profile = DEFAULT_PROFILE
        # Imported symbols of a module, resolved against the vmlinux it is loaded into.
        self.resolve_import: Callable[[str], int | None] = lambda name: None
        self.vmlinux: Image | None = None  # set for a module loaded into a known vmlinux
        if cache is not None and not self.is_module:
            self._use_index(cache)

    # Whole-file facts kept in the build-id index: what the rules consult, in compact form.
    _INDEXED = ("_raw_symbols", "symbols", "ftrace_sites", "return_sites", "extable", "bug_sites", "blacklist",
                "config", "sealed_endbrs")

    def _use_index(self, cache: IndexCache) -> None:
        """Take the whole-file facts from the build-id index, or compute and store them."""
        build_id = self.elf.build_id()
        self._facts = cache.fact_store(build_id)
        data = cache.load(build_id)
        if data is not None and all(name in data for name in (*self._INDEXED, "sites", "tables")):
            self.__dict__.update({name: data[name] for name in self._INDEXED})
            self._sites.update(data["sites"])
            self._indexed_tables = data["tables"]
            return
        facts = {name: getattr(self, name) for name in progress(self._INDEXED, len(self._INDEXED),
                                                                 f"indexing {self.path} (first run)", minimum=1)}
        sites = {name: self.reserved_sites(name) for name in ("jump_table", "static_call_sites")}
        # the tables live-text patching and jump-label targets read, each unpickled when first read
        # (a warm run whose functions' live text is in the fact store reads none of the first two)
        tables = {name: pickle.dumps(self.table(name), pickle.HIGHEST_PROTOCOL)
                  for name in ("parainstructions", "alt_instructions", "jump_table")}
        # sorted address lists stay arrays when loaded: bisected in place, never rebuilt int by int
        facts.update({name: array("Q", facts[name]) for name in ("ftrace_sites", "return_sites", "extable")})
        cache.store(build_id, {**facts, "sites": sites, "tables": tables})

    @cached_property
    def symbols(self) -> Kallsyms | ModuleSymbols:
        if self.layout is not None:
            return ModuleSymbols(self.elf, self.layout)
        return kallsyms_from_vmlinux(self.elf)

    @cached_property
    def _raw_symbols(self) -> NameMap:
        """First defined .symtab value of each name whose value kallsyms does not give: linker-script
        markers and table bounds, which the kernel uses directly whether or not kallsyms keeps them.
        (Kept apart from kallsyms to keep the index small.)"""
        out: dict[str, int] = {}
        for s in self.elf.symbols():
            if s.shndx != 0 and s.name:
                out.setdefault(s.name, s.value)
        symbols = self.symbols
        # kallsyms_lookup_name() of every name at once (the first of equal names wins)
        kallsyms = dict(zip(reversed(symbols.names), reversed(symbols.addresses), strict=True))
        return NameMap({name: value for name, value in out.items() if kallsyms.get(name) != value})

    def raw_symbol(self, name: str) -> int | None:
        if self.layout is not None:
            return None
        memo = self.__dict__.setdefault("_raw_memo", {})
        if name not in memo:
            value = self._raw_symbols.get(name)
            memo[name] = value if value is not None else self.symbols.address_of(name)
        return memo[name]

    def marker(self, name: str) -> int | None:
        return self.raw_symbol(name)

    @cached_property
    def relocations(self) -> RelocTable:
        assert self.layout is not None, "only modules carry relocations"
        return RelocTable(self.elf, self.layout.section_address, self.resolve_import)

    def table(self, name: str) -> list[dict[str, int]]:
        """A kernel special section's entries (image/tables.py), read once."""
        cached = self._tables.get(name)
        if cached is None:
            packed = self._indexed_tables.pop(name, None)
            cached = pickle.loads(packed) if packed is not None else read_table(self, TABLES[name])
            self._tables[name] = cached
        return cached

    @cached_property
    def return_sites(self) -> list[int]:
        return sorted(e["addr"] for e in self.table("return_sites"))

    @cached_property
    def retpoline_sites(self) -> list[int]:
        return sorted(e["addr"] for e in self.table("retpoline_sites"))

    @cached_property
    def sealed_endbrs(self) -> list[int]:
        return sorted(e["addr"] for e in self.table("ibt_endbr_seal"))

    @cached_property
    def paravirt_sites(self) -> list[tuple[int, int]]:
        """(address, table index) of every paravirt patch site, by address."""
        return sorted((e["instr"], i) for i, e in enumerate(self.table("parainstructions")))

    @cached_property
    def alternative_sites(self) -> list[tuple[int, int]]:
        return sorted((e["instr"], i) for i, e in enumerate(self.table("alt_instructions")))

    def pv_op(self, op_type: int) -> int | None:
        """Target of pv_ops slot `op_type` as initialised in the vmlinux: 0 for _paravirt_nop,
        None if unknown (no vmlinux, no pv_ops)."""
        vmlinux = self if self.layout is None else self.vmlinux
        if vmlinux is None:
            return None
        base, nop = vmlinux.raw_symbol("pv_ops"), vmlinux.raw_symbol("_paravirt_nop")
        if base is None:
            return None
        raw = vmlinux.read(base + 8 * op_type, 8)
        if len(raw) != 8:
            return None
        target = int.from_bytes(raw, "little")
        return 0 if target == nop else target

    @cached_property
    def extable(self) -> list[int]:
        """Sorted faulting-instruction addresses of __ex_table (search_exception_tables)."""
        return sorted({e["insn"] for e in self.table("ex_table")})

    def in_extable(self, address: int) -> bool:
        pos = bisect.bisect_left(self.extable, address)
        return pos < len(self.extable) and self.extable[pos] == address

    @cached_property
    def thunk_range(self) -> tuple[int, int] | None:
        """[__indirect_thunk_start, __indirect_thunk_end] of the vmlinux (6.1 + RETPOLINE)."""
        lo, hi = self.raw_symbol("__indirect_thunk_start"), self.raw_symbol("__indirect_thunk_end")
        return (lo, hi) if lo is not None and hi is not None else None

    def reserved_sites(self, name: str) -> list[tuple[int, int]]:
        """Sorted (start, end) of patched sites: jump labels (2 or 5 bytes), static calls (5)."""
        cached = self._sites.get(name)
        if cached is None:
            if name == "jump_table":
                ends = []
                for e in self.table("jump_table"):
                    code = e["code"]
                    first = self.read(code, 1)
                    ends.append((code, code + (2 if first in (b"\xeb", b"\x66") else 5)))
            else:
                ends = [(e["addr"], e["addr"] + 5) for e in self.table("static_call_sites")]
            cached = self._sites[name] = sorted(ends)
        return cached

    def jump_label_target(self, code: int) -> int | None:
        """The branch target of the jump-label site at `code` (`__jump_table` target field)."""
        targets = self.__dict__.get("_jump_targets")
        if targets is None:
            targets = self.__dict__["_jump_targets"] = {e["code"]: e["target"] for e in self.table("jump_table")}
        return targets.get(code)

    def site_overlapping(self, name: str, start: int, end: int) -> int | None:
        """First site of `name` overlapping [start, end), or None."""
        sites = self.reserved_sites(name)
        pos = bisect.bisect_left(sites, (start - 5, 0))
        while pos < len(sites) and sites[pos][0] < end:
            if sites[pos][1] > start:
                return sites[pos][0]
            pos += 1
        return None

    @cached_property
    def bug_sites(self) -> frozenset[int]:
        return frozenset(e["addr"] for e in self.table("bug_table"))

    @cached_property
    def blacklist(self) -> Blacklist:
        return Blacklist(self)

    @cached_property
    def ftrace_sites(self) -> list[int]:
        """Sorted fentry call sites of a running kernel: __mcount_loc minus zero entries (skipped by
        ftrace_process_locs) and init-text sites (freed by ftrace_free_init_mem after boot)."""
        return sorted({e["addr"] for e in self.table("mcount_loc") if e["addr"] and not self.is_init_text(e["addr"])})

    def ftrace_site_in(self, start: int, end: int) -> int | None:
        """ftrace_location_range(start, end - 1): the first site whose 5 bytes overlap."""
        sites = self.ftrace_sites
        pos = bisect.bisect_left(sites, start - x86.MCOUNT_INSN_SIZE + 1)
        return sites[pos] if pos < len(sites) and sites[pos] < end else None

    def section_at(self, address: int) -> ElfSection | None:
        pos = bisect.bisect_right(self._starts, address) - 1
        while pos >= 0:
            start, end, sec = self._placed[pos]
            if start <= address < end:
                return sec
            if end <= address and pos > 0 and self._placed[pos - 1][1] <= address:
                return None
            pos -= 1
        return None

    def section_address(self, sec: ElfSection) -> int:
        return self.layout.section_address[sec.index] if self.layout else sec.address

    def read(self, address: int, size: int) -> bytes:
        """Bytes at `address`, as far as one section holds them (shorter at a section end)."""
        sec = self.section_at(address)
        if sec is None:
            return b""
        start = address - self.section_address(sec)
        data = self.elf.section_bytes(sec, start, min(size, sec.size - start))
        if self.layout is not None:
            data = apply_relocations(data, start, self.section_address(sec), self.relocations.for_section(sec.index))
        return data

    @cached_property
    def config(self) -> KernelConfig:
        """Build options inferred from this image's symbols and sections (kept in the index)."""
        return infer_config(self)

    @cached_property
    def version(self) -> str | None:
        """The kernel's banner (``Linux version 6.1.0-56-cloud-amd64 ...``), or a module's vermagic."""
        if self.layout is not None:
            return modinfo(self.elf).get("vermagic") or None
        banner = self.raw_symbol("linux_banner")
        if banner is None:
            return None
        text = self.read(banner, 512).split(b"\0", 1)[0]
        return text.decode(errors="replace").strip() or None

    def has_init_symbol(self, name: str) -> bool:
        """A module symbol defined in an ``.init*`` section (dropped from kallsyms after load)."""
        sections = self.elf.sections
        return self.layout is not None and any(
            s.name == name and 0 < s.shndx < len(sections) and sections[s.shndx].name.startswith(".init")
            for s in self.elf.symbols()
        )

    def is_ksym_addr(self, address: int) -> bool:
        """kernel/kallsyms.c is_ksym_addr() with KALLSYMS_ALL, or module text for a module."""
        if self.layout is not None:
            lay = self.layout
            return lay.text_start <= address < lay.text_end or lay.init_text_start <= address < lay.init_text_end
        (lo, hi), (init_lo, init_hi) = self._ksym_ranges
        return lo <= address < hi or init_lo <= address < init_hi

    @cached_property
    def _ksym_ranges(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """[_stext, _end) and [__init_begin, __init_end); an unknown bound makes its range empty."""
        def bounds(lo: int | None, hi: int | None) -> tuple[int, int]:
            return (lo, hi) if lo is not None and hi is not None else (0, 0)

        return (bounds(self.marker("_stext"), self.marker("_end")),
                bounds(self.marker("__init_begin"), self.marker("__init_end")))

    def lookup(self, address: int) -> KSym | None:
        if not self.is_ksym_addr(address):
            return None
        return self.symbols.lookup(address)

    def is_core_text(self, address: int) -> bool:
        """core_kernel_text() after boot / a module's core text (check_kprobe_address_safe)."""
        if self.layout is not None:
            return self.layout.text_start <= address < self.layout.text_end
        stext, etext = self.marker("_stext"), self.marker("_etext")
        return stext is not None and etext is not None and stext <= address < etext

    def is_init_text(self, address: int) -> bool:
        if self.layout is not None:
            return self.layout.init_text_start <= address < self.layout.init_text_end
        lo, hi = self.marker("_sinittext"), self.marker("_einittext")
        return lo is not None and hi is not None and lo <= address < hi

    def function(self, sym: KSym, *, every_insn: bool = False) -> Function:
        """The containing symbol decoded from its start (cached per image). Instructions are
        decoded when read unless `every_insn` (a caller that reads them all keeps the walk's)."""
        key = (sym.address, self.profile)
        fn = self._functions.get(key)
        if fn is None:
            # The last instruction may run past the symbol end: the kernel reads on.
            file_code = self.read(sym.address, sym.size + x86.MAX_INSN_SIZE)
            facts = self._facts.get(self.profile.cache_key, sym.address) if self._facts is not None else None
            code = facts.live(file_code) if facts is not None else patch_live_text(self, sym.address, file_code,
                                                                                   self.profile)
            if facts is not None and not every_insn:
                fn = Function(sym, facts, code)
            else:
                insns = []
                for insn in x86.decode(code, sym.address):
                    if insn.address >= sym.end:
                        break
                    insns.append(insn)
                if facts is None:
                    facts = FunctionFacts.of(insns, file_code, code)
                    if self._facts is not None:
                        self._facts.put(self.profile.cache_key, sym.address, facts)
                # Otherwise the walk is dropped: rules read a few instructions, and memory stays flat.
                fn = Function(sym, facts, code, tuple(insns) if every_insn else None)
            self._functions[key] = fn
        return fn

    def prefetch_functions(self, symbols: list[KSym]) -> None:
        """Fetch the stored facts of the functions about to be read, in a few queries."""
        if self._facts is not None:
            self._facts.prefetch(self.profile.cache_key,
                                 [s.address for s in symbols if (s.address, self.profile) not in self._functions])

    def forget_functions(self) -> None:
        """Drop the decoded functions (a caller that visits each function once)."""
        self._functions.clear()

    def save_facts(self) -> None:
        """Write the decode facts of the functions this process decoded (image/facts.py); also
        done at exit, but forked workers leave without running exit handlers."""
        if self._facts is not None:
            self._facts.flush()

    def describe(self, address: int) -> str:
        """``SYM+0xOFF`` (``MOD:SYM+0xOFF`` in a module), or the bare address."""
        sym = self.lookup(address)
        if sym is None:
            return f"{address:#x}"
        prefix = f"{self.name}:" if self.is_module else ""
        return f"{prefix}{sym.name}+{address - sym.address:#x}"


class Kernel:
    """A vmlinux (optional) and the modules loaded with it, in load order."""

    def __init__(self, images: list[Image]) -> None:
        vmlinuxes = [i for i in images if not i.is_module]
        if len(vmlinuxes) > 1:
            raise InputError(vmlinuxes[1].path, "a second vmlinux in one kernel (the CLI checks several side by side)")
        self.vmlinux = vmlinuxes[0] if vmlinuxes else None
        self.modules = [i for i in images if i.is_module]
        self.images = ([self.vmlinux] if self.vmlinux else []) + self.modules
        self._at_least: dict[tuple[int, int], bool] = {}
        if self.vmlinux is not None:
            for mod in self.modules:
                mod.resolve_import = self.vmlinux.raw_symbol
                mod.vmlinux = self.vmlinux
        self.thunk_range = self.vmlinux.thunk_range if self.vmlinux else None

    @cached_property
    def version(self) -> KernelVersion | None:
        """The kernel's version, from the vmlinux banner or a module's vermagic."""
        for image in self.images:
            found = detect_version(image)
            if found is not None:
                return found
        return None

    @property
    def config(self) -> KernelConfig | None:
        """Build options inferred from the vmlinux (image/version.py), None without a vmlinux."""
        return self.vmlinux.config if self.vmlinux is not None else None

    def at_least(self, major: int, minor: int) -> bool:
        """Is this kernel `major.minor` or newer? Unknown versions are taken as 6.1 (the model's base)."""
        known = self._at_least.get((major, minor))
        if known is None:
            known = self._at_least[(major, minor)] = self.version is not None and self.version.at_least(major, minor)
        return known

    def enabled(self, option: str) -> bool:
        """Is CONFIG_`option` set (as inferred)? Unknown counts as not set."""
        return bool(self.config is not None and self.config.enabled(option))

    def disabled(self, option: str) -> bool:
        """Is CONFIG_`option` known to be off? Unknown counts as on (the 6.1 model's default)."""
        return self.config is not None and self.config.enabled(option) is False

    @property
    def profile(self) -> CpuProfile:
        return self.images[0].profile if self.images else DEFAULT_PROFILE

    def set_profile(self, profile: CpuProfile) -> None:
        for image in self.images:
            image.profile = profile

    def module(self, name: str) -> Image | None:
        for mod in self.modules:
            if mod.name == name:
                return mod
        return None

    def lookup_name(self, name: str, module: str | None = None) -> tuple[Image, KSym] | None:
        images = [m for m in self.modules if m.name == module] if module else self.images
        for image in images:
            sym = image.symbols.lookup_name(name)
            if sym is not None:
                return image, sym
        return None

    def count(self, name: str) -> int:
        """number_of_same_symbols(): vmlinux kallsyms plus every loaded module's symbols."""
        return sum(image.symbols.count(name) for image in self.images)

    def lookup(self, address: int) -> tuple[Image, KSym] | None:
        for image in self.images:
            sym = image.lookup(address)
            if sym is not None:
                return image, sym
        return None


MODULE_SLOT_SIZE = 0x1000_0000  # 256 MiB per module: far more than any module's layout


def open_image(path: str | Path, cache: IndexCache | None = None, module_slot: int = 0) -> Image:
    return Image(ElfFile(path), cache, module_slot)
