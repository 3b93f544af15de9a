"""The kernel as the probes will see it: a vmlinux plus the modules loaded beside it.

Name lookups follow kernel/kallsyms.c `kallsyms_lookup_name` (vmlinux first, then modules in
load order; ``MOD:SYM`` only in that module) and address lookups `kallsyms_lookup_size_offset`
(vmlinux when `is_ksym_addr`, else the module whose text contains the address).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from probelint.arch.x86.cpu import DEFAULT_PROFILE, CpuProfile
from probelint.errors import InputError
from probelint.image.cache import IndexCache
from probelint.image.elf import ElfFile
from probelint.image.function import Function, LazyInsns
from probelint.image.kallsyms import KSym
from probelint.image.kversion import KernelConfig, KernelVersion
from probelint.image.module import Module
from probelint.image.module_layout import MODULE_BASE
from probelint.image.version import detect_version
from probelint.image.vmlinux import DotConfig, Vmlinux

__all__ = ["Function", "Image", "Kernel", "LazyInsns", "Module", "Vmlinux", "open_image"]

MAX_DOTCONFIG = 16 << 20  # a .config is ~300 KiB (allyesconfig under 1 MiB)

Image = Vmlinux | Module


class Kernel:
    """A vmlinux (optional) and the modules loaded with it, in load order."""

    def __init__(self, vmlinux: Vmlinux | None, modules: list[Module], profile: CpuProfile) -> None:
        self.vmlinux = vmlinux
        self.modules = modules
        self.images: list[Image] = [*([vmlinux] if vmlinux else []), *modules]
        self.profile = profile
        self._at_least: dict[tuple[int, int], bool] = {}
        self._loaded_as: tuple[list[str | Path], DotConfig | None, IndexCache | None] | None = None
        self.thunk_range = vmlinux.thunk_range if vmlinux else None

    @classmethod
    def load(cls, paths: Sequence[str | Path], *, profile: CpuProfile = DEFAULT_PROFILE,
             dotconfig: DotConfig | None = None, cache: IndexCache | None = None) -> Kernel:
        """The images at `paths` live together: modules are loaded into the vmlinux, laid out one
        after another in the module area in the order of `paths`."""
        elves = [ElfFile(p) for p in paths]
        vmlinuxes = [elf for elf in elves if not elf.is_relocatable]
        if len(vmlinuxes) > 1:
            raise InputError(vmlinuxes[1].path, "a second vmlinux in one kernel (the CLI checks several side by side)")
        vmlinux = Vmlinux(vmlinuxes[0], profile, cache, dotconfig) if vmlinuxes else None
        modules: list[Module] = []
        base = MODULE_BASE
        for elf in elves:
            if elf.is_relocatable:
                modules.append(Module(elf, profile, vmlinux, base, cache))
                base = modules[-1].layout.end
        kernel = cls(vmlinux, modules, profile)
        kernel._loaded_as = (list(paths), dotconfig, cache)
        return kernel

    def with_profile(self, profile: CpuProfile) -> Kernel:
        """The same images booted on another CPU (loaded again: an image's live text is its profile's)."""
        if profile is self.profile:
            return self
        if self._loaded_as is None:
            raise ValueError("only a kernel made by Kernel.load can be loaded again")
        paths, dotconfig, cache = self._loaded_as
        return Kernel.load(paths, profile=profile, dotconfig=dotconfig, cache=cache)

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

    def module(self, name: str) -> Module | None:
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


def open_image(path: str | Path, cache: IndexCache | None = None, *, profile: CpuProfile = DEFAULT_PROFILE) -> Image:
    """One image on its own: a module is not loaded into any vmlinux."""
    elf = ElfFile(path)
    return Module(elf, profile, None, MODULE_BASE, cache) if elf.is_relocatable else Vmlinux(elf, profile, cache)


def load_kernel(images: Sequence[str | Path], *, profile: CpuProfile | str | None = None,
                dotconfig: str | Path | None = None, cache_dir: Path | None = None, cache: bool = False) -> Kernel:
    """A vmlinux and/or modules (.ko) that will be live together, as booted on the CPU `profile`
    (default: `probelint.arch.x86.cpu.DEFAULT_PROFILE`). `dotconfig`: the kernel's .config, whose
    options override those inferred from the vmlinux. With `cache`, whole-file facts are kept in a
    build-id index under `cache_dir` (default: ``~/.cache/probelint``)."""
    from probelint.image.cache import default_cache_dir

    config_text = None
    if dotconfig is not None:
        from probelint.fileio import read_regular

        # a regular file of bounded size: --config /dev/zero or a FIFO is one line, not a hang
        text = read_regular(dotconfig, MAX_DOTCONFIG, "a kernel .config").decode(errors="replace")
        config_text = (text, str(dotconfig))
    index = IndexCache(cache_dir or default_cache_dir()) if cache else None
    return Kernel.load(images, profile=CpuProfile(profile or DEFAULT_PROFILE), dotconfig=config_text, cache=index)
