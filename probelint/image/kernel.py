"""The kernel as the probes will see it: a vmlinux plus the modules loaded beside it.

Name lookups follow kernel/kallsyms.c `kallsyms_lookup_name` (vmlinux first, then modules in
load order; ``MOD:SYM`` only in that module) and address lookups `kallsyms_lookup_size_offset`
(vmlinux when `is_ksym_addr`, else the module whose text contains the address).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probelint.arch.x86.cpu import DEFAULT_PROFILE, CpuProfile
from probelint.errors import InputError
from probelint.image.cache import IndexCache
from probelint.image.changes import Evidence, applies, assumptions
from probelint.image.elf import ElfFile
from probelint.image.function import Function, LazyInsns
from probelint.image.kallsyms import KSym
from probelint.image.kversion import MAX_KCONFIG, KernelConfig, KernelVersion
from probelint.image.module import Module, module_name
from probelint.image.module_layout import MODULE_BASE
from probelint.image.symbol_map import SymbolMap, beside, is_symbol_map_file
from probelint.image.version import detect_version
from probelint.image.vmlinux import DotConfig, Vmlinux

if TYPE_CHECKING:
    from probelint.image.module_index import ModuleNames

__all__ = ["Function", "Image", "Kernel", "LazyInsns", "Module", "Vmlinux", "open_image"]


Image = Vmlinux | Module


class Kernel:
    """A vmlinux (optional) and the modules loaded with it, in load order."""

    def __init__(self, vmlinux: Vmlinux | None, modules: list[Module], profile: CpuProfile) -> None:
        self.vmlinux = vmlinux
        self.modules = modules
        self.images: list[Image] = [*([vmlinux] if vmlinux else []), *modules]
        self.profile = profile
        self._loaded_as: tuple[list[str | Path], DotConfig | None, IndexCache | None,
                               Mapping[str, int] | None] | None = None
        self.thunk_range = vmlinux.thunk_range if vmlinux else None
        # --live: the probelint.live.LiveSystem this kernel is (Any: live.py reads the checks' results)
        self.live: Any = None
        self._changes: dict[str, Evidence] = {}  # rules ask per probe: answered once per kernel
        # the module tree beside the kernel: where a function the given images lack is defined
        # (KP101's did-you-mean); None: no tree
        self.module_tree: ModuleNames | None = None
        # modules known not to be loaded in the kernel the probes are for (KP413: held pending)
        self.unloaded: frozenset[str] = frozenset()

    @classmethod
    def load(cls, paths: Sequence[str | Path | ElfFile], *, profile: CpuProfile = DEFAULT_PROFILE,
             dotconfig: DotConfig | None = None, cache: IndexCache | None = None,
             module_bases: Mapping[str, int] | None = None) -> Kernel:
        """The images at `paths` live together: modules are loaded into the vmlinux, laid out one
        after another in the module area in the order of `paths`, or from the address
        `module_bases` gives by module name (a running kernel's). An image already opened (an
        `ElfFile`: a .ko whose vermagic was read) is used as it is, not read (decompressed) again."""
        maps = [p for p in paths if not isinstance(p, ElfFile) and is_symbol_map_file(p)]
        elves = [p if isinstance(p, ElfFile) else ElfFile(p, cache.root if cache is not None else None)
                 for p in paths if p not in maps]
        vmlinuxes = [elf for elf in elves if not elf.is_relocatable]
        if len(vmlinuxes) > 1:
            raise InputError(vmlinuxes[1].path, "a second vmlinux in one kernel (the CLI checks several side by side)")
        if len(maps) > 1 or (maps and not vmlinuxes):
            raise InputError(str(maps[-1]), "a symbol map is for one vmlinux or vmlinuz, given with it")
        symbol_map = _symbol_map(vmlinuxes[0], maps) if vmlinuxes else None
        vmlinux = Vmlinux(vmlinuxes[0], profile, cache, dotconfig, symbol_map) if vmlinuxes else None
        modules: list[Module] = []
        base = MODULE_BASE
        for elf in elves:
            if elf.is_relocatable:
                at = (module_bases or {}).get(module_name(elf))
                modules.append(Module(elf, profile, vmlinux, base if at is None else at, cache))
                if at is None:
                    base = modules[-1].layout.end
        kernel = cls(vmlinux, modules, profile)
        kernel._loaded_as = ([p.path if isinstance(p, ElfFile) else p for p in paths], dotconfig, cache, module_bases)
        return kernel

    def with_profile(self, profile: CpuProfile) -> Kernel:
        """The same images booted on another CPU (loaded again: an image's live text is its profile's)."""
        if profile is self.profile:
            return self
        if self._loaded_as is None:
            raise ValueError("only a kernel made by Kernel.load can be loaded again")
        paths, dotconfig, cache, bases = self._loaded_as
        again = Kernel.load(paths, profile=profile, dotconfig=dotconfig, cache=cache, module_bases=bases)
        again.arrive(self.arriving)
        return again

    @property
    def cache(self) -> IndexCache | None:
        """The index cache the images were loaded with (None: none)."""
        return self._loaded_as[2] if self._loaded_as is not None else None

    @property
    def arriving(self) -> frozenset[str]:
        """The modules the probes are defined before (`arrive`)."""
        return frozenset(m.name for m in self.modules if m.coming)

    def arrive(self, names: Iterable[str]) -> None:
        """The probes are defined before the modules `names` load: a ``MOD:SYM`` on one of them
        is held pending and registered when MOD arrives (trace_kprobe_module_callback at
        MODULE_STATE_COMING), checked against MOD as it is then; a plain ``SYM`` is looked up
        when written, without them."""
        wanted = set(names)
        for mod in self.modules:
            mod.coming = mod.name in wanted

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

    def does(self, change: str) -> bool:
        """Does this kernel carry the behaviour change `change` (a row of image/changes.py)?"""
        return self.change(change).value

    def change(self, change: str) -> Evidence:
        """The answer for `change` with its evidence: the vmlinux's detector, else the version."""
        found = self._changes.get(change)
        if found is None:
            image = self.vmlinux if self.vmlinux is not None else next(iter(self.images), None)
            found = self._changes[change] = applies(change, image, self.version)
        return found

    @cached_property
    def assumptions(self) -> list[str]:
        """What is assumed of a kernel outside the validated ones (image/changes.py `assumptions`)."""
        return assumptions(self.vmlinux, self.version)

    def enabled(self, option: str) -> bool:
        """Is CONFIG_`option` set (as inferred)? Unknown counts as not set."""
        return bool(self.config is not None and self.config.enabled(option))

    def disabled(self, option: str) -> bool:
        """Is CONFIG_`option` known to be off? Unknown counts as on (the 6.1 model's default)."""
        return self.config is not None and self.config.enabled(option) is False

    def module(self, name: str) -> Module | None:
        for mod in self.modules:
            if mod.name == name:
                return mod
        return None

    def lookup_name(self, name: str, module: str | None = None, *,
                    written: bool = False) -> tuple[Image, KSym] | None:
        """kallsyms_lookup_name; `written`: as a probe's plain SYM is looked up when it is defined,
        before the modules that are yet to arrive (`arrive`)."""
        images = [m for m in self.modules if m.name == module] if module else self.present(written)
        for image in images:
            sym = image.symbols.lookup_name(name)
            if sym is not None:
                return image, sym
        return None

    def count(self, name: str) -> int:
        """number_of_same_symbols() of a plain SYM, as the kernel counts it (`same_symbols`)."""
        return sum(n for _, n in self.same_symbols(name))

    def same_symbols(self, name: str, written: bool = False,
                     loaded: Iterable[tuple[str, int]] = ()) -> list[tuple[str, int]]:
        """(image, count) of `name` where number_of_same_symbols(NULL, name) looks: the vmlinux's
        kallsyms, then every loaded module's (`loaded`: more modules, by name, a live kernel's);
        from 7.1 (row vmlinux-symbol-first) the modules only when the vmlinux has no such symbol.
        `written`: when a probe is defined, before the modules yet to arrive."""
        vmlinux = self.vmlinux
        if vmlinux is not None and self.does("vmlinux-symbol-first"):
            in_vmlinux = vmlinux.symbols.count(name)
            if in_vmlinux:
                return [(vmlinux.name, in_vmlinux)]
        return [(image.name, image.symbols.count(name)) for image in self.present(written)] + list(loaded)

    def present(self, written: bool = False) -> list[Image]:
        """The images in kallsyms: all; `written`: when a probe is defined, before the modules yet
        to arrive."""
        return [i for i in self.images if not i.coming] if written else self.images

    def lookup(self, address: int) -> tuple[Image, KSym] | None:
        for image in self.images:
            sym = image.lookup(address)
            if sym is not None:
                return image, sym
        return None


def _symbol_map(elf: ElfFile, given: list[str | Path]) -> SymbolMap | None:
    """The map the symbols of a vmlinux without .symtab come from: the one given, else the
    System.map installed beside it; None for a vmlinux with its .symtab."""
    if elf.section(".symtab") is not None and not given:
        return None
    if given:
        return SymbolMap(given[0])
    refused = None
    for path in beside(elf.path):
        try:
            return SymbolMap(path)
        except InputError as exc:  # Debian's placeholder: another place may have the real one
            refused = refused or exc
    if refused is not None:
        raise refused
    what = "a bzImage" if elf.bzimage else "a stripped vmlinux"
    raise InputError(elf.path, f"{what} (no .symtab), without symbols: name its System.map or a kallsyms dump "
                               "with it (sudo cat /proc/kallsyms > kallsyms.txt), or use the unstripped image "
                               "(Debian: the -dbg package)")


def open_image(path: str | Path, cache: IndexCache | None = None, *, profile: CpuProfile = DEFAULT_PROFILE,
               symbol_map: str | Path | None = None) -> Image:
    """One image on its own: a module is not loaded into any vmlinux; a vmlinux without .symtab
    takes its symbols from `symbol_map` or the System.map installed beside it."""
    elf = ElfFile(path, cache.root if cache is not None else None)
    if elf.is_relocatable:
        return Module(elf, profile, None, MODULE_BASE, cache)
    return Vmlinux(elf, profile, cache, symbol_map=_symbol_map(elf, [symbol_map] if symbol_map else []))


def load_kernel(images: Sequence[str | Path | ElfFile], *, profile: CpuProfile | str | None = None,
                dotconfig: str | Path | None = None, cache_dir: Path | None = None, cache: bool = False,
                module_bases: Mapping[str, int] | None = None) -> Kernel:
    """A vmlinux and/or modules (.ko) that will be live together, as booted on the CPU `profile`
    (default: `probelint.arch.x86.cpu.DEFAULT_PROFILE`). `dotconfig`: the kernel's .config, whose
    options override those inferred from the vmlinux. With `cache`, whole-file facts are kept in a
    build-id index under `cache_dir` (default: ``~/.cache/probelint``). `module_bases`: where
    modules are loaded, by name (`Kernel.load`)."""
    from probelint.image.cache import default_cache_dir

    config_text = None
    if dotconfig is not None:
        from probelint.fileio import read_regular

        # a regular file of bounded size: --config /dev/zero or a FIFO is one line, not a hang
        text = read_regular(dotconfig, MAX_KCONFIG, "a kernel .config").decode(errors="replace")
        config_text = (text, str(dotconfig))
    index = IndexCache(cache_dir or default_cache_dir()) if cache else None
    return Kernel.load(images, profile=CpuProfile(profile or DEFAULT_PROFILE), dotconfig=config_text, cache=index,
                       module_bases=module_bases)
