"""`--live`: the running kernel as it is, read from the files root reads on the machine itself.

* symbols: /proc/kallsyms (with addresses: root, or kptr_restrict off), slid back by the KASLR
  slide worked out from ``_text`` (image/symbol_map.py);
* the special tables and the link-time layout: the bzImage/vmlinux of ``uname -r`` (-dbg vmlinux,
  else /boot's vmlinuz): a running kernel keeps no copy of them that can be read;
* the text bytes as the CPU patched them: /proc/kcore, an ELF core file whose PT_LOAD headers
  map kernel virtual addresses to file offsets (fs/proc/kcore.c), instead of the CPU-profile model
  of the boot-time patching;
* the kprobe blacklist: debugfs kprobes/blacklist (kernel/kprobes.c kprobe_blacklist_seq_show:
  ``0xSTART-0xEND\\tSYM``, ``\\t[MOD]`` for a module's);
* the probes already registered: debugfs kprobes/list (kernel/kprobes.c report_probe:
  ``ADDR  k|r  SYM+0xOFF  [MOD] [GONE][DISABLED][OPTIMIZED][FTRACE]``): checked with the new
  probes as one set, so that a new probe in or around an optimized one is reported as the kernel
  will treat it (KP301/KP302), the existing probe named as the list names it;
* loaded modules: /proc/modules (their names and load addresses), and their symbols in
  /proc/kallsyms: a plain SYM is unique only if no loaded module has it either (KP102, as
  kprobe_events counts), and one that only a loaded module defines is that module's
  (kallsyms_lookup_name falls back to module_kallsyms_lookup_name). A module a probe needs is
  read from its .ko (the module tree of the image, or --modules), laid out from the address
  /proc/modules gives (`Module`, image/module_layout.py) and checked against the module's
  ``[MOD]`` lines of /proc/kallsyms; its text is read from /proc/kcore there (kcore maps the
  module area: fs/proc/kcore.c add_modules_range);

A registered kprobe has replaced the bytes at its address (int3, or a 5-byte jump when
optimized): those bytes are the model's again before the text is decoded, as the kernel's own
copy of the original instruction would give them.

All paths are under `root` (``--live-root``, for tests and for a guest's files seen from outside).
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from probelint.errors import InputError
from probelint.fileio import read_regular

if TYPE_CHECKING:
    from probelint.checks import ProbeResult
    from probelint.image.kernel import Kernel
    from probelint.image.module import Module
    from probelint.image.view import KernelImage
    from probelint.readers.spec import ProbeSpec

__all__ = ["Kcore", "ListEntry", "LiveSystem", "Registered", "parse_blacklist", "parse_list_line", "parse_probe_list",
           "read_live"]

KALLSYMS = "proc/kallsyms"
KCORE = "proc/kcore"
MODULES = "proc/modules"
OSRELEASE = "proc/sys/kernel/osrelease"
DEBUGFS = "sys/kernel/debug"
PROBE_LIST = f"{DEBUGFS}/kprobes/list"
BLACKLIST = f"{DEBUGFS}/kprobes/blacklist"
MAX_LIST = 64 << 20
MAX_PHDRS = 1 << 16  # a kcore has one PT_LOAD per memory range: hundreds at most
JMP32_INSN_SIZE = 5  # an optimized probe's jump (arch/x86/include/asm/text-patching.h)

# kprobe_blacklist_seq_show: "0x%px-0x%px\t%ps\n"; %ps of a module's symbol is "SYM [MOD]"
_BLACKLIST_LINE = re.compile(r"0x([0-9a-fA-F]+)-0x([0-9a-fA-F]+)\t(\S+)(?: \[(\S+)\])?")


@dataclass
class ListEntry:
    """One line of ``/sys/kernel/debug/kprobes/list`` (kernel/kprobes.c `report_probe`: ``%px  %s
    %s+0x%x  %s `` then the flags; the vmtest harness reads booted kernels' lists with it too)."""

    address: int
    kind: str  # "k" or "r"
    symbol: str
    offset: int
    module: str | None
    flags: frozenset[str]
    line: str


_FLAG_RE = re.compile(r"\[(GONE|DISABLED|OPTIMIZED|FTRACE)\]")


def parse_list_line(line: str) -> ListEntry | None:
    """Parse ``ffffffff8134cc50  k  vfs_read+0x0  [FTRACE]`` (module optional); None if not a probe."""
    toks = line.split()
    if len(toks) < 3 or toks[1] not in ("k", "r"):
        return None
    try:
        addr = int(toks[0], 16)
    except ValueError:
        return None
    symoff = toks[2].split("/")[0]
    sym, _, off = symoff.rpartition("+")
    try:
        offset = int(off, 16)
    except ValueError:
        sym, offset = symoff, 0
    flags = frozenset(_FLAG_RE.findall(" ".join(toks[3:])))
    module = None
    for tok in toks[3:]:
        rest = _FLAG_RE.sub("", tok)
        if rest:
            module = rest.strip("[]")
    return ListEntry(addr, toks[1], sym, offset, module, flags, line)


@dataclass(frozen=True)
class Registered:
    """One line of kprobes/list."""

    line: int
    address: int  # run-time (slid); 0 when the reader may not see addresses
    is_return: bool
    symbol: str
    offset: int
    module: str | None
    flags: frozenset[str]  # GONE, DISABLED, OPTIMIZED, FTRACE

    @property
    def name(self) -> str:
        """The probe as the list names it."""
        head = f"{self.module}:{self.symbol}" if self.module else self.symbol
        return f"{head}+{self.offset:#x}"


def parse_probe_list(text: str, where: str) -> list[Registered]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        entry = parse_list_line(line)
        if entry is None:
            raise InputError(f"{where}:{number}", "not a kprobes/list line (ADDR  k|r  SYM+0xOFF  [MOD] [FLAGS])")
        out.append(Registered(number, entry.address, entry.kind == "r", entry.symbol, entry.offset, entry.module,
                              entry.flags))
    return out


def parse_blacklist(text: str, where: str) -> list[tuple[int, int, str]]:
    """(start, end, symbol) of the vmlinux's entries (a module's are its own image's)."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _BLACKLIST_LINE.fullmatch(line.rstrip("\n"))
        if match is None:
            raise InputError(f"{where}:{number}", "not a kprobes/blacklist line (0xSTART-0xEND<TAB>SYM)")
        if match[4] is None:
            out.append((int(match[1], 16), int(match[2], 16), match[3]))
    return out


class Kcore:
    """/proc/kcore: kernel virtual memory through its PT_LOAD program headers."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise InputError(self.path, f"cannot read: {exc.strerror}") from None
        head = os.pread(self._fd, 64, 0)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            raise InputError(self.path, "not a 64-bit little-endian ELF core file")
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        if phentsize < 56 or phnum > MAX_PHDRS:
            raise InputError(self.path, "program headers out of bounds")
        table = os.pread(self._fd, phentsize * phnum, phoff)
        self._loads = []
        for k in range(len(table) // phentsize):
            p_type, _, offset, vaddr, _, filesz = struct.unpack_from("<IIQQQQ", table, k * phentsize)
            if p_type == 1 and filesz:  # PT_LOAD
                self._loads.append((vaddr, vaddr + filesz, offset))

    def read(self, address: int, size: int) -> bytes:
        """The bytes at kernel virtual `address`, as far as one PT_LOAD holds them."""
        for start, end, offset in self._loads:
            if start <= address < end:
                return os.pread(self._fd, min(size, end - address), offset + address - start)
        return b""


@dataclass
class LiveSystem:
    """What `read_live` found under `root`."""

    root: Path
    release: str
    kallsyms: Path
    kcore: Kcore
    blacklist: list[tuple[int, int, str]]
    registered: list[Registered]
    modules: list[str]  # /proc/modules order: the newest first, module_kallsyms_lookup_name's order
    notes: list[str] = field(default_factory=list)  # what -v says
    module_symbols: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> {module: count}
    module_bases: dict[str, int] = field(default_factory=dict)  # module -> its text's load address
    module_text: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # module -> text symbol -> addresses

    def module_defining(self, names: set[str]) -> dict[str, str]:
        """{name: the loaded module whose symbol kallsyms_lookup_name finds} for the `names` the
        vmlinux lacks and a loaded module has (the first in /proc/modules order)."""
        wanted = {n for n in names if n in self.module_symbols}
        if not wanted:
            return {}
        in_vmlinux = set()
        for line in read_regular(self.kallsyms, MAX_LIST, "a kernel status file").split(b"\n"):
            fields = line.split()
            if len(fields) == 3 and fields[2].decode("utf-8", "replace") in wanted:
                in_vmlinux.add(fields[2].decode("utf-8", "replace"))
        order = {m: k for k, m in enumerate(self.modules)}
        return {n: min(self.module_symbols[n], key=lambda m: order.get(m, len(order)))
                for n in wanted - in_vmlinux}

    def module_symbol_count(self, name: str) -> dict[str, int]:
        """How often each loaded module's kallsyms has `name` (any type, as 6.1.y's
        trace_kprobe.c number_of_same_symbols counts through module_kallsyms_on_each_symbol)."""
        return self.module_symbols.get(name, {})

    @property
    def probe_list(self) -> str:
        return str(self.root / PROBE_LIST)

    def existing_probes(self) -> list[ProbeSpec]:
        """The registered probes as probes of the set (a [GONE] one no longer exists)."""
        from probelint.findings import Location
        from probelint.readers.spec import ProbeSpec

        return [ProbeSpec(r.name, Location(self.probe_list, r.line, 1), r.is_return, r.symbol, r.module, r.offset,
                          None, disabled="DISABLED" in r.flags)
                for r in self.registered if "GONE" not in r.flags]

    def observe(self, results: list[ProbeResult]) -> None:
        """The registered probes (the first results of the set) as the list shows them: armed
        unless disabled, optimized or ftrace-based as it says."""
        live = [r for r in self.registered if "GONE" not in r.flags]
        for reg, result in zip(live, results, strict=False):
            result.verdict.registers = True
            result.verdict.errno = None
            result.verdict.optimized = "OPTIMIZED" in reg.flags
            result.verdict.ftrace = "FTRACE" in reg.flags

    def attach(self, kernel: Kernel) -> None:
        """Make the loaded kernel the running one: live text, live blacklist."""
        from probelint.image.blacklist import Blacklist

        vmlinux = kernel.vmlinux
        if vmlinux is None or vmlinux.symbol_map is None:
            raise InputError("--live", "the running kernel's image must take its symbols from /proc/kallsyms")
        text = vmlinux.elf.section(".text")
        slide = vmlinux.symbol_map.slide(text.address if text is not None else 0)
        vmlinux.live_text = _LiveText(vmlinux, self.kcore, slide, self._armed(None, slide))
        for module in kernel.modules:
            if module.name in self.module_bases:
                self._check_layout(module)
                module.live_text = _LiveText(module, self.kcore, 0, self._armed(module.name, 0))
        ranges = [(s - slide, e - slide, f"the running kernel's kprobe blacklist ({sym})")
                  for s, e, sym in self.blacklist]
        vmlinux.__dict__["blacklist"] = Blacklist.of_ranges(ranges)
        kernel.live = self


    def _armed(self, module: str | None, slide: int) -> list[tuple[int, int]]:
        """(model address, bytes replaced) of the armed probes in the vmlinux or `module`."""
        return sorted((r.address - slide, JMP32_INSN_SIZE if "OPTIMIZED" in r.flags else 1)
                      for r in self.registered if r.address and r.module == module
                      and not r.flags & {"GONE", "DISABLED", "FTRACE"})

    def _check_layout(self, module: Module) -> None:
        """The module laid out from its /proc/modules address must put its text symbols where
        the running kernel's kallsyms has them: otherwise its live text would be read elsewhere."""
        live = self.module_text.get(module.name, {})
        for name, addresses in live.items():
            sym = module.symbols.lookup_name(name)
            if sym is not None and len(addresses) == 1 and sym.address != addresses[0]:
                raise InputError(str(self.kallsyms), f"{module.name}:{name} is at {addresses[0]:#x}, but "
                                 f"{module.elf.path} laid out from {self.module_bases[module.name]:#x} "
                                 f"(/proc/modules) puts it at {sym.address:#x}: not the module that was loaded?")


class _LiveText:
    """The text as the running kernel holds it, the bytes registered probes replaced put back."""

    def __init__(self, image: KernelImage, kcore: Kcore, slide: int, armed: list[tuple[int, int]]) -> None:
        self.image, self.kcore, self.slide, self.armed = image, kcore, slide, armed

    def __call__(self, address: int, size: int) -> bytes | None:
        data = self.kcore.read(address + self.slide, size)
        if len(data) < size:
            return None  # not in kcore: the model's bytes
        buf = bytearray(data)
        for at, length in self.armed:
            if address <= at < address + size:
                from probelint.arch.x86.patching import patch_live_text

                model = patch_live_text(self.image, at, self.image.read(at, length), self.image.profile)
                buf[at - address : at - address + len(model)] = model[: address + size - at]
        return bytes(buf[:size])


def read_live(root: Path = Path("/")) -> LiveSystem:
    """The running system's files under `root`; one line naming what is missing otherwise."""
    from probelint.discover import _shows_addresses

    missing = []
    kallsyms = root / KALLSYMS
    if not kallsyms.is_file():
        missing.append(f"{kallsyms} (no procfs?)")
    elif not _shows_addresses(kallsyms):
        missing.append(f"the addresses of {kallsyms} (kptr_restrict hides them: run as root)")
    kcore = root / KCORE
    if not os.access(kcore, os.R_OK):
        missing.append(f"{kcore} ({'run as root' if kcore.exists() else 'CONFIG_PROC_KCORE off'})")
    debugfs = root / DEBUGFS
    lists = [root / PROBE_LIST, root / BLACKLIST]
    if not all(os.access(p, os.R_OK) for p in lists):
        if not (debugfs / "kprobes").exists():
            missing.append(f"{debugfs}/kprobes (mount debugfs as root: mount -t debugfs none {debugfs}; "
                           "or CONFIG_KPROBES off)")
        else:
            missing.append(f"{debugfs}/kprobes/list and blacklist (run as root)")
    if missing:
        raise InputError("--live", "cannot read the running kernel: no " + "; no ".join(missing))
    release = _text(root / OSRELEASE, 256).strip() if (root / OSRELEASE).is_file() else os.uname().release
    registered = parse_probe_list(_text(lists[0], MAX_LIST), str(lists[0]))
    if any(not r.address for r in registered):
        raise InputError(str(lists[0]), "addresses shown as 0: read it as root")
    modules, bases = _modules(_text(root / MODULES, MAX_LIST)) if (root / MODULES).is_file() else ([], {})
    counts, text = _module_symbols(kallsyms)
    return LiveSystem(root, release, kallsyms, Kcore(kcore), parse_blacklist(_text(lists[1], MAX_LIST), str(lists[1])),
                      registered, modules, module_symbols=counts, module_bases=bases, module_text=text)


def _modules(text: str) -> tuple[list[str], dict[str, int]]:
    """/proc/modules (kernel/module/procfs.c m_show: ``name size refcount deps state 0xADDR``):
    the names, and the load addresses where shown (the base of the module's text)."""
    names, bases = [], {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        names.append(fields[0])
        if len(fields) >= 6 and fields[5].startswith("0x") and int(fields[5], 16):
            bases[fields[0]] = int(fields[5], 16)
    return names, bases


def _module_symbols(kallsyms: Path) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, list[int]]]]:
    """The loaded modules' symbols of /proc/kallsyms (``ADDR TYPE NAME\t[MOD]``): by name, how
    many each module has; by module, where its text symbols are."""
    counts: dict[str, dict[str, int]] = {}
    text: dict[str, dict[str, list[int]]] = {}
    for line in read_regular(kallsyms, MAX_LIST, "a kernel status file").split(b"\n"):
        if b"\t[" not in line:
            continue
        head, _, mod = line.partition(b"\t[")
        fields = head.split()
        if len(fields) == 3:
            name = fields[2].decode("utf-8", "replace")
            per = counts.setdefault(name, {})
            module = mod.split(b"]", 1)[0].decode("utf-8", "replace")
            per[module] = per.get(module, 0) + 1
            if fields[1] in (b"t", b"T") and all(c in b"0123456789abcdefABCDEF" for c in fields[0]):
                text.setdefault(module, {}).setdefault(name, []).append(int(fields[0], 16))
    return counts, text


def _text(path: Path, limit: int) -> str:
    # proc and debugfs files stat as empty regular files: read up to the limit
    return read_regular(path, limit, "a kernel status file").decode("utf-8", "replace")


def live_images(live: LiveSystem) -> tuple[list[str], list[str]]:
    """(the image of the running kernel with /proc/kallsyms as its symbols, why other places were
    not taken). The tables are the image's: without one, nothing can be checked."""
    from probelint.discover import candidates, vmlinuz_candidates

    why = []
    for image in [*candidates(live.release, live.root), *vmlinuz_candidates(live.release, live.root)]:
        if image.is_file():
            return [str(image), str(live.kallsyms)], why
        why.append(f"no {image}")
    raise InputError("--live", f"no image of the running kernel {live.release} (its special tables: jump labels, "
                               "static calls, exception table, ftrace sites are only in the vmlinux or vmlinuz; "
                               "install linux-image-" + live.release + " or name the image)")
