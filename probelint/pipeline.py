"""One path from input to report, for every front door (the command line, `probelint.check`,
``explain``, ``map``, ``vmtest``):

    read sources -> load the kernel -> resolve (source lines, wildcards) -> check (per probe, then
    the set rules) -> hints -> Report

Each finding passes the gate (`probelint.gate`) as the rules emit it; the `Report` holds the
results with the kernel and the settings (`probelint.config.Config`) they were made under, and is
what every reporter renders.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, overload

from probelint.config import Config, rule_ids
from probelint.errors import InputError
from probelint.image.elf import modname, modname_of_file

if TYPE_CHECKING:
    from probelint.checks import ProbeResult
    from probelint.gate import Gate
    from probelint.image.cache import IndexCache
    from probelint.image.elf import ElfFile
    from probelint.image.kernel import Kernel
    from probelint.live import LiveSystem
    from probelint.readers import Parsed
    from probelint.result_cache import ResultStore

__all__ = ["Counts", "Report", "load", "parse_texts", "read_probe_file", "read_sources", "read_texts", "run"]

MAX_PROBE_FILE = 64 << 20  # a probe list is text written by people: refuse anything absurd


class Counts(NamedTuple):
    """The summary of a report: probes by verdict, and findings reported."""

    probes: int
    registers: int
    optimized: int
    ftrace: int
    refused: int
    unchecked: int  # the verdict is unknown (module not given, form not modelled): KP402, KP407
    findings: int
    unused: int = 0  # never registered by its tool (SystemTap `A !, B` takes A): KP411, not in `unchecked`
    optimization_unchecked: int = 0  # registers; whether it is optimized is not known (KP412)


class Report(Sequence["ProbeResult"]):
    """The results of one run, in input order (a sequence of `ProbeResult`), with the kernel and
    the settings they were made under."""

    def __init__(self, kernel: Kernel, results: list[ProbeResult], config: Config) -> None:
        self.kernel = kernel
        self.results = results
        self.config = config
        # (probes whose result an earlier run had stored, the store's path); None: none kept
        self.stored: tuple[int, str] | None = None

    @overload
    def __getitem__(self, index: int) -> ProbeResult: ...
    @overload
    def __getitem__(self, index: slice) -> list[ProbeResult]: ...

    def __getitem__(self, index: int | slice) -> ProbeResult | list[ProbeResult]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[ProbeResult]:
        return iter(self.results)

    @property
    def cpu_profile(self) -> str:
        """The CPU whose boot-time patching the verdicts assume: the kernel's, as loaded."""
        return self.kernel.profile.value

    @property
    def unvalidated(self) -> str | None:
        """One warning naming what is assumed of a kernel outside the validated ones (a version
        not checked on a booted kernel, or a special section unknown to probelint), else None."""
        found = self.kernel.assumptions
        return "; ".join(found) if found else None

    @property
    def failed(self) -> bool:
        """A finding at or above the fail level: the command's exit status 1."""
        level = self.config.fail_level
        return any(f.severity >= level for r in self.results for f in r.findings)

    def counts(self) -> Counts:
        verdicts = [r.verdict for r in self.results]
        registers = sum(v.registers is True for v in verdicts)
        unknown = sum(v.registers is None for v in verdicts)
        unused = sum(v.registers is None and "KP411" in v.reasons for v in verdicts)
        return Counts(len(verdicts), registers, sum(v.optimized is True for v in verdicts),
                      sum(v.ftrace for v in verdicts), len(verdicts) - registers - unknown, unknown - unused,
                      sum(len(r.findings) for r in self.results), unused,
                      sum(v.registers is True and v.optimized is None for v in verdicts))


def run(config: Config, images: Sequence[str | Path] | Kernel, sources: Sequence[Parsed]) -> Report:
    """Check `sources` (what the readers found) against the kernel `images` (or a loaded kernel)."""
    from probelint.engine import check_probes, gate_for
    from probelint.image.kernel import Kernel
    from probelint.resolve import expand_globs, resolve_source_lines

    rule_ids(config.severity, config.source or "severity")  # a typo in a rule id is an error, not a no-op
    kernel = images if isinstance(images, Kernel) else load(config, images, sources)
    placed = expand_globs(kernel, resolve_source_lines(kernel, list(sources), _lines_cache(config)))
    gate = gate_for(config.selected(), config.severity)
    live = kernel.live
    # --live: the probes already registered go first in the set (a new one is their duplicate,
    # not they its), with what the kernel says of them; only the new ones are reported
    existing = live.existing_probes() if live is not None else []
    store = _result_store(config, kernel, gate)
    results = check_probes(kernel, [*existing, *placed], gate, jobs=config.jobs,
                           observed=live.observe if live is not None else None, stored=store)[len(existing):]
    if config.wants_hints(len(results)):
        from probelint.suggest import add_hints

        add_hints(kernel, results)
    report = Report(kernel, results, config)
    if store is not None:
        report.stored = (store.taken, store.directory.shown(store.name))
    return report


def load(config: Config, images: Sequence[str | Path], sources: Sequence[Parsed] = ()) -> Kernel:
    """The kernel as `config` describes it (CPU profile, .config, cache), with the modules that
    `MOD:SYM` probes and `config.loaded` name found beside it."""
    from probelint.image.kernel import load_kernel

    live = None
    if config.live:
        from probelint.image.symbol_map import is_symbol_map_file
        from probelint.live import live_images, read_live

        live = read_live(config.live_root)
        if not images:
            images, _ = live_images(live)
        elif not any(is_symbol_map_file(p) for p in images):  # the image named, its symbols the running ones
            images = [*images, str(live.kallsyms)]
        sources = [*sources, *live.existing_probes()]  # their modules are wanted too
    paths = [str(p) for p in images]
    vmlinux, opened = _vmlinux_of_modules(paths)
    # --live: a MOD:SYM of a module /proc/modules does not list is held pending (KP413), not
    # checked against a .ko found on disk as if it were loaded; --pending: it will load, and the
    # .ko says what its arrival does
    pending = frozenset(modname(m.strip()) for m in config.pending if m.strip())
    unloaded = _not_loaded(live.modules, paths, sources) - pending if live is not None else frozenset()
    modules = _module_images(config, paths, sources, unloaded, _defining(live, sources), live.modules if live else ())
    kernel = load_kernel(vmlinux + opened + modules, profile=config.profile, dotconfig=config.dotconfig,
                         cache_dir=config.cache_dir, cache=config.cache,
                         module_bases=live.module_bases if live is not None else None)
    kernel.unloaded = unloaded
    kernel.arrive(pending)
    if live is not None:
        live.attach(kernel)
    dirs = _module_dirs(config, paths)
    if dirs:
        from probelint.discover import module_files
        from probelint.image.cache import IndexCache, default_cache_dir
        from probelint.image.module_index import ModuleNames

        names = IndexCache(config.cache_dir or default_cache_dir(), "module-names") if config.cache else None
        kernel.module_tree = ModuleNames(lambda: list(module_files(dirs)), names)
    return kernel


def _module_dirs(config: Config, images: list[str]) -> list[Path]:
    """Where modules are looked for: --modules, else the module tree beside the first image that has one."""
    from probelint.discover import default_module_dirs

    dirs = list(config.modules)
    for image in images:
        if not dirs:
            dirs = default_module_dirs(image)
    return dirs


def _vmlinux_of_modules(images: list[str]) -> tuple[list[str], list[str | ElfFile]]:
    """Modules given without a vmlinux: the one they were built for, when it is found (said on
    stderr); otherwise none, and KP412 reports what only the vmlinux decides. With `images`, each
    module opened to read its vermagic in place of its path (a .ko.xz is decompressed once)."""
    from probelint.discover import vmlinux_for_module
    from probelint.errors import printable
    from probelint.image.elf import ElfFile, is_module_file
    from probelint.image.module import modinfo

    opened: list[str | ElfFile] = list(images)
    if not images or not all(is_module_file(p) for p in images):  # a symbol map or bzImage: a vmlinux is there
        return [], opened
    for n, path in enumerate(images):
        elf = opened[n] = ElfFile(path)
        release = modinfo(elf).get("vermagic", "").split(" ", 1)[0]
        found = vmlinux_for_module(path, release) if release else None
        if found is not None:
            print(printable(f"probelint: no vmlinux given: using {found}, the kernel {path} was built for"),
                  file=sys.stderr)
            return [str(found)], opened
    return [], opened


def _result_store(config: Config, kernel: Kernel, gate: Gate) -> ResultStore | None:
    """Where the probes' results are kept between runs (probelint/result_cache.py), if anywhere."""
    if not config.cache:
        return None
    from probelint.result_cache import ResultStore

    return ResultStore.open(kernel, gate)


def _lines_cache(config: Config) -> IndexCache | None:
    if not config.cache:
        return None
    from probelint.image.cache import IndexCache, default_cache_dir

    return IndexCache(config.cache_dir or default_cache_dir(), "dwarf-lines")


def _given_modules(images: list[str]) -> set[str]:
    return {modname_of_file(i) for i in images}


def _not_loaded(running: Sequence[str], images: list[str], sources: Sequence[Parsed]) -> frozenset[str]:
    """The modules `MOD:SYM` probes name that the running kernel has not loaded (and no image given is)."""
    from probelint.readers.spec import ProbeSpec

    present = {modname(m) for m in running} | _given_modules(images)
    return frozenset(p.module for p in sources
                     if isinstance(p, ProbeSpec) and p.module and modname(p.module) not in present)


def _defining(live: LiveSystem | None, sources: Sequence[Parsed]) -> set[str]:
    """--live: the loaded modules that define a plain SYM the vmlinux lacks (the kernel resolves it there)."""
    if live is None:
        return set()
    from probelint.readers.spec import ProbeSpec

    names = {p.symbol for p in sources if isinstance(p, ProbeSpec) and p.symbol and not p.module}
    return set(live.module_defining(names).values())


def _module_images(config: Config, images: list[str], sources: Sequence[Parsed],
                   unloaded: frozenset[str] = frozenset(), also: Collection[str] = (),
                   order: Sequence[str] = ()) -> list[str]:
    """.ko files for MOD:SYM probes, loaded modules and the modules `also` that are not among
    `images` (nor known `unloaded`); those `order` names (a running kernel's /proc/modules, the
    order its modules are looked in) first, in that order."""
    from probelint.discover import find_modules
    from probelint.readers.spec import ProbeSpec

    loaded = {m.strip() for m in config.loaded if m.strip()}
    wanted = loaded | set(also) | {p.module for p in sources
                                   if isinstance(p, ProbeSpec) and p.module and p.module not in unloaded}
    given = _given_modules(images)
    wanted = {m for m in wanted if modname(m) not in given}
    if not wanted:
        return []
    dirs = _module_dirs(config, images)
    found = find_modules(wanted, dirs)
    missing = sorted(m for m in loaded if modname(m) not in found)
    if missing:
        where = ", ".join(map(str, dirs)) or "no module directory (use --modules DIR)"
        raise InputError("--loaded", f"module {', '.join(missing)} not found in {where}")
    rank = {modname(m): k for k, m in enumerate(order)}
    return [str(found[m]) for m in sorted(found, key=lambda m: rank.get(m, len(rank)))]


def read_sources(paths: Sequence[str | Path], source_type: str | None = None) -> list[Parsed]:
    """Every probe of the probe files and directories, in order: one set."""
    return parse_texts(read_texts(paths), source_type)


def read_texts(paths: Sequence[str | Path]) -> dict[str, str]:
    """The text of each probe file named or in a directory named, in order, each file once
    however often it is named (FILE FILE, DIR and DIR/FILE, a symlink and its target, hard
    links): read twice, each of its probes would be a duplicate of itself."""
    from probelint.readers import tree_files

    files: list[tuple[str, bool, str | None]] = []  # (file, follow a link at its name, the tree it must stay in)
    for name in map(str, paths):
        if name != "-" and os.path.isdir(name):
            # a walked file was no link when the walk met it: one planted since is not followed
            top = os.path.realpath(name)
            files += [(str(f), f.is_symlink(), top) for f in tree_files(Path(name))]
        else:
            files.append((name, True, None))
    texts: dict[str, str] = {}
    seen: set[object] = set()
    for file, follow, tree in files:
        real = file if file == "-" else os.path.realpath(file)
        try:
            inode: object = (st.st_dev, st.st_ino) if file != "-" and (st := os.stat(real)).st_nlink > 1 else real
        except OSError:
            inode = real  # reading it says why it cannot be read
        if inode not in seen:
            seen.add(inode)
            texts[file] = read_probe_file(file, follow=follow, inside=tree)
    return texts


def parse_texts(texts: dict[str, str], source_type: str | None = None) -> list[Parsed]:
    """The probes of each file's text (by path), read as its kind says."""
    from probelint.readers import MAX_PROBES, extract

    probes: list[Parsed] = []
    for path, text in texts.items():
        probes += extract(path, text, source_type, MAX_PROBES - len(probes))
    return probes


def read_probe_file(path: str, *, follow: bool = True, inside: str | None = None) -> str:
    """A probe file's text ('-': standard input), refused with one line if it is not text, or
    not a regular file (a FIFO would block the run, a device read without end)."""
    from probelint.fileio import read_regular

    try:
        if path == "-":
            text = sys.stdin.read(MAX_PROBE_FILE + 1)
            if len(text) > MAX_PROBE_FILE:
                raise InputError(path, f"larger than {MAX_PROBE_FILE >> 20} MiB: not a probe list")
        else:
            # decoded as stored (CRLF kept, no newline translation), so that --fix rewrites what was read
            data = read_regular(path, MAX_PROBE_FILE, "a probe list", follow=follow, inside=inside)
            text = data.decode("utf-8", errors="strict")
        if "\0" in text:
            raise InputError(path, "not a text file (it contains NUL bytes)")
        return text
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not a text file (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror}") from None
