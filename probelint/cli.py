"""Command line: ``probelint [options] IMAGE... PROBES...``.

Positional arguments are told apart by content: ELF files are kernel images (one vmlinux and
any number of modules, live together), everything else (and ``-`` for stdin) is a probe file.
Exit status: 0 no finding at or above the fail level, 1 such findings, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import gc
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from probelint._version import __version__
from probelint.arch.x86.cpu import PROFILE_NAMES, CpuProfile
from probelint.config import HINTS
from probelint.errors import InputError, printable
from probelint.findings import Severity
from probelint.readers import KINDS

if TYPE_CHECKING:
    from probelint.checks import ProbeResult
    from probelint.config import Config
    from probelint.image.kernel import Kernel
    from probelint.pipeline import Report
    from probelint.readers import Parsed

__all__ = ["main"]

_SUBCOMMANDS = ("rule", "rules", "vmtest", "explain", "map")


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter with the terminal's width asked once, as shutil.get_terminal_size()
    would answer ($COLUMNS, else the terminal's, else 80). The stock one imports shutil, and with
    it bz2 and lzma (~2 ms of every run), to ask again for each add_argument()."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, _help_width() if width is None else width)


@functools.cache
def _help_width() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2  # what argparse subtracts from the terminal's width


def _kernel_options() -> argparse.ArgumentParser:
    """The options that say which kernel, as booted where: shared by the lint run, explain and map."""
    p = argparse.ArgumentParser(add_help=False, formatter_class=_HelpFormatter)
    p.add_argument("--cpu-profile", choices=PROFILE_NAMES,
                   help="the CPU whose features decide how the kernel patches its text at boot (alternatives, "
                        "retpolines, returns): qemu64 (= ret, no return thunk; the default), EPYC-Rome (= rethunk, "
                        "AMD retbleed/SRSO), Skylake-Client-v4 (= its, Intel ITS: half the returns keep the thunk), "
                        "noretpoline (qemu64 with spectre_v2=off, as eIBRS CPUs: thunk calls become call *%%reg); "
                        "default: [tool.probelint] cpu-profile, else qemu64")
    p.add_argument("--config", type=Path, metavar="DOTCONFIG",
                   help="the kernel's .config (/boot/config-*): its options override what is inferred from the image")
    p.add_argument("--modules", type=Path, action="append", default=[], metavar="DIR",
                   help="where to find MOD.ko for MOD:SYM probes and --loaded (default: the -dbg module tree "
                        "of the vmlinux, when it is there)")
    p.add_argument("--loaded", metavar="MODS",
                   help="comma-separated modules assumed loaded: their symbols count for the uniqueness of plain "
                        "SYM probes (default: none besides the .ko files given and MOD: probes)")
    p.add_argument("--pending", metavar="MODS",
                   help="comma-separated modules that load after the probes are defined: kprobe_events holds "
                        "their MOD:SYM probes pending and registers them as each module arrives, checked "
                        "against the module as it is then (its init text included), while a plain SYM is "
                        "looked up without them")
    p.add_argument("--no-cache", action="store_true",
                   help="do not read or write the cache: the kernel image's build-id index and decode facts, "
                        "and the probes' stored results (every probe is checked again)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="where the cache lives (default: $PROBELINT_CACHE, $XDG_CACHE_HOME/probelint, "
                        "~/.cache/probelint)")
    p.add_argument("-j", "--jobs", type=int, metavar="N",
                   help="processes checking a large probe set (default: one per CPU; 1: no forking)")
    return p


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="probelint", parents=[_kernel_options()], formatter_class=_HelpFormatter,
        description="Predict, from the kernel ELF, whether each kprobe registers and is jump-optimized.",
        epilog="Subcommands: 'probelint rules' lists the rules, 'probelint rule ID' prints one rule's page, "
               "'probelint explain IMAGE PROBE' shows one probe's function as the kernel sees it, "
               "'probelint map IMAGE' classifies every boundary, "
               "'probelint vmtest' checks probes against a booted kernel.",
    )
    p.add_argument("--live", action="store_true",
                   help="the running kernel as it is (root): symbols from /proc/kallsyms, text from /proc/kcore, "
                        "the blacklist and the probes already registered from debugfs; the tables from its image")
    p.add_argument("--live-root", type=Path, default=Path("/"), metavar="DIR",
                   help="where --live finds proc/ and sys/kernel/debug/ (default: /)")
    p.add_argument("paths", nargs="*", metavar="IMAGE|PROBES",
                   help="vmlinux and/or module .ko files, then probe files ('-' reads stdin)")
    p.add_argument("--kernel", action="append", default=[], metavar="IMAGE",
                   help="a kernel image (repeatable): for callers such as pre-commit that pass only probe files")
    p.add_argument("--format", choices=("text", "json", "sarif", "github", "gitlab"), default="text",
                   help="text (gcc-style, default), json (probelint/schema/report.schema.json), sarif (2.1.0), "
                        "github (workflow annotations), gitlab (Code Quality)")
    p.add_argument("--fail-level", choices=("info", "warning", "error"),
                   help="lowest severity that makes the exit status 1 (default: error, i.e. a probe the "
                        "kernel refuses; 'warning' also fails on probes that will not be jump-optimized)")
    p.add_argument("--select", metavar="IDS", help="comma-separated rule ids or prefixes to report (default: all)")
    p.add_argument("--ignore", metavar="IDS", help="comma-separated rule ids or prefixes not to report")
    p.add_argument("--show-info", action="store_true",
                   help="list info findings in text and github output (default: counted in the summary, unless "
                        "their rule is selected; json and sarif always list them)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="say which kernel version, build options (and why) and CPU profile the verdicts assume")
    p.add_argument("--source-type", choices=("auto", *KINDS), default="auto",
                   help="how to read probe files: probe list, bpftrace script, libbpf BPF C, shell script, SystemTap "
                        "(default: by extension and content); directories are walked for .bt/.bpf.c/.sh/.stp files")
    p.add_argument("--fix", action="store_true",
                   help="apply safe fixes to the probe files (addresses as SYM+OFF, octal offsets in hex)")
    p.add_argument("--unsafe-fixes", action="store_true",
                   help="also apply fixes that move probes (to the nearest offset that registers or is optimized) "
                        "or remove a probe its file already has")
    p.add_argument("--diff", action="store_true", help="print the fixes as a unified diff instead of writing them")
    p.add_argument("--hints", choices=HINTS, default="auto",
                   help="suggest the nearest offsets that register / are optimized (auto: up to 500 probes)")
    p.add_argument("--show-config", action="store_true",
                   help="print the settings in effect ([tool.probelint] merged with the flags) and exit")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.add_argument("--version", action="version", version=f"probelint {__version__}")
    return p


def _settings(args: argparse.Namespace) -> Config:
    """[tool.probelint], then the flags (those this command has)."""
    from probelint.config import load_config

    config = load_config()
    if args.cpu_profile:
        config.cpu_profile = CpuProfile(args.cpu_profile).value
    config.dotconfig = args.config
    config.modules = list(args.modules)
    config.loaded = _split(args.loaded)
    config.pending = _split(args.pending)
    config.cache = not args.no_cache
    if args.cache_dir == "":  # Path("") is the current directory: never the cache by accident
        raise InputError("--cache-dir", "an empty directory name (give a directory, or --no-cache)")
    config.cache_dir = Path(args.cache_dir) if args.cache_dir is not None else None
    config.jobs = args.jobs or os.cpu_count() or 1
    if getattr(args, "fail_level", None):
        config.fail_level = Severity.parse(args.fail_level)
    config.select = _split(getattr(args, "select", None)) or config.select
    config.ignore = _split(getattr(args, "ignore", None)) or config.ignore
    config.show_info = getattr(args, "show_info", False) or config.show_info
    config.kernel = getattr(args, "kernel", None) or config.kernel
    config.live = getattr(args, "live", False)
    config.live_root = getattr(args, "live_root", None) or config.live_root
    source_type = getattr(args, "source_type", "auto")
    config.source_type = None if source_type == "auto" else source_type
    # the unsafe fixes are the hints' offsets
    config.hints = "always" if getattr(args, "unsafe_fixes", False) else getattr(args, "hints", config.hints)
    return config


def _is_elf(path: str) -> bool:
    """An ELF image, a bzImage (the vmlinux inside), a System.map or kallsyms dump (the symbols of
    the vmlinux given with it), or a kernel module by name (``.ko``, ``.ko.xz``, ``.ko.gz``,
    ``.ko.zst``: an empty or damaged one is an image error, not an empty probe file). A FIFO or
    device is refused here, before anything reads it."""
    if path == "-" or os.path.isdir(path):
        return False
    from probelint.fileio import open_regular
    from probelint.image.bzimage import is_bzimage
    from probelint.image.elf import MODULE_SUFFIXES
    from probelint.image.symbol_map import is_symbol_map

    with open_regular(path) as fh:
        head = fh.read(0x210)
    magic = head[:4]
    if magic == b"\x7fELF" or path.endswith(MODULE_SUFFIXES[1:]) or is_bzimage(head) or is_symbol_map(head):
        return True
    if path.endswith(".ko"):
        raise InputError(path, "not an ELF file (a .ko is a kernel module)" if magic
                         else "empty file, not a kernel module")
    return False


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _subcommand(argv: list[str]) -> int:
    from probelint.checks import all_rules
    from probelint.ruledocs import rule_doc, rule_summary

    if argv[0] == "rules":
        for rule in all_rules().values():
            errno = f" ({rule.errno})" if rule.errno else ""
            summary = rule_summary(rule.id)
            summary = summary if len(summary) <= 90 else summary[:89] + "…"
            print(f"{rule.id}  {rule.severity!s:7}  {rule.name:38} {summary}{errno}")
        return 0
    if len(argv) != 2:
        print("usage: probelint rule ID", file=sys.stderr)
        return 2
    doc = rule_doc(argv[1])
    if doc is None:
        raise InputError(argv[1], "no such rule (see 'probelint rules')")
    sys.stdout.write(doc)
    return 0


MAX_FUNCTION_SIZE = 256 << 10  # the largest Debian 6.1 function is ~40 KiB


def _map(argv: list[str]) -> int:
    """probelint map IMAGE [MAP] [--function F]... [-o FILE]  |  probelint map --query SYM+OFF FILE
    |  probelint map IMAGE --function F --html OUT.html [--svg OUT.svg] [PROBES...]"""
    p = argparse.ArgumentParser(prog="probelint map", description=_map.__doc__, parents=[_kernel_options()],
                                formatter_class=_HelpFormatter)
    p.add_argument("path", metavar="IMAGE|MAP")
    p.add_argument("probes", nargs="*", metavar="PROBES", help="probe files whose probes in F the picture marks")
    p.add_argument("--function", action="append", default=[], help="map only this function (repeatable)")
    p.add_argument("-o", "--output", type=Path, help="map file to write (default: IMAGE.probemap.gz here)")
    p.add_argument("--query", metavar="SYM+OFF", help="look a probe point up in an existing map file")
    p.add_argument("--html", type=Path, help="write a picture of --function F as a self-contained HTML page")
    p.add_argument("--svg", type=Path, help="write the picture of --function F as an SVG file")
    args = p.parse_intermixed_args(argv)
    picture = args.html is not None or args.svg is not None
    from probelint import probemap
    from probelint.image.kallsyms import looks_linker_provided

    if args.query:
        try:
            found = probemap.query(Path(args.path), args.query)
        except (OSError, ValueError) as exc:
            raise InputError(args.path, f"not a probelint map: {exc}") from None
        if found is None:
            raise InputError(args.path, f"{args.query}: no such function in the map")
        print(found)
        return 0
    from probelint.pipeline import load, read_sources, run

    if not _is_elf(args.path):
        raise InputError(args.path, "not an ELF file")
    # IMAGE [MODULE.ko ...] [MAP] [PROBES ...]: with modules, their functions are mapped; a
    # vmlinuz's symbols (System.map, kallsyms dump) named after it, as the lint run takes them
    images = [args.path, *(p for p in args.probes if _is_elf(p))]
    probe_files = [p for p in args.probes if p not in images]
    if picture and len(args.function) != 1:
        raise InputError(args.path, "--html/--svg draw one function: name it with --function F")
    if probe_files and not picture:
        raise InputError(probe_files[0], "probe files are marked on a picture: add --html or --svg")
    config = _settings(args)
    kernel = load(config, images)
    mapped = kernel.modules or ([kernel.vmlinux] if kernel.vmlinux is not None else [])
    if not mapped:
        raise InputError(args.path, "map takes a vmlinux")
    image = mapped[-1]
    if args.function:
        syms = []
        for name in args.function:
            module, _, bare = name.rpartition(":")
            found = kernel.lookup_name(bare, module or None)
            if found is None:
                raise InputError(args.path, f"unknown function {name}")
            image, sym = found
            if not (image.is_core_text(sym.address) or image.is_init_text(sym.address)):
                # data (jiffies, ...) would be decoded and drawn as instructions
                raise InputError(args.path, f"{name} is not a function: it is not in kernel text")
            if (count := image.symbols.count(bare)) > 1:
                print(f"probelint: note: {count} symbols are named {bare}; mapping the lowest-addressed one, "
                      f"at {sym.address:#x}, as kallsyms_lookup_name() resolves the name", file=sys.stderr)
            syms.append(sym)
    else:
        from probelint.image.module import Module

        if isinstance(image, Module):
            stext, etext = image.layout.text_start, image.layout.text_end
        else:
            stext, etext = image.marker("_stext") or 0, image.marker("_etext") or 0
        # functions, not the linker-script markers whose kallsyms "size" spans a whole gap
        syms = [s for s in image.symbols.symbols_in(stext, etext)
                if s.type in "tTwW" and 0 < s.size <= MAX_FUNCTION_SIZE and not looks_linker_provided(s.name)]
    if picture:
        from probelint import picture as drawing

        sym = syms[0]
        if not 0 < sym.size <= MAX_FUNCTION_SIZE:
            raise InputError(args.path, f"{args.function[0]}: a symbol of {sym.size} bytes is no function to draw")
        config.hints = "never"
        report = run(config, kernel, read_sources(probe_files))
        drawn = drawing.build(kernel, sym, report.results, image)
        for path in drawing.write(drawn, args.path, html=args.html, svg=args.svg):
            print(printable(f"picture of {sym.name} written to {path}"), file=sys.stderr)
        if args.output is None:
            return 0  # a picture was asked for, not a map file
    output = args.output or Path(Path(image.path).name + ".probemap.gz")
    counts = probemap.map_kernel(kernel, syms, output, args.jobs, image)
    sys.stdout.write(probemap.summary(counts))
    print(printable(f"map written to {output} [cpu profile: {kernel.profile.value}]"), file=sys.stderr)
    return 0


def _explain(argv: list[str]) -> int:
    """probelint explain [options] IMAGE... PROBE: the kernel's view of one probe."""
    p = argparse.ArgumentParser(prog="probelint explain", description=_explain.__doc__,
                                parents=[_kernel_options()], formatter_class=_HelpFormatter)
    p.add_argument("args", nargs="+", metavar="IMAGE... PROBE")
    args = p.parse_intermixed_args(argv)
    from probelint.explain import explain
    from probelint.pipeline import run
    from probelint.readers.spec import parse_text

    *images, probe = args.args
    if not images:
        raise InputError(probe, "name the kernel image(s) before the probe")
    for image in images:
        if not _is_elf(image):
            raise InputError(image, "not an ELF file")
    config = _settings(args)
    config.hints = "never"
    report = run(config, images, list(parse_text(probe, "<explain>")))
    (result,) = report
    sys.stdout.write(explain(report.kernel, result))
    return 0 if result.verdict.registers else 1


# Set by `entry`: what a run built (the kernel, its index, every probe's context) is left for the
# exit that skips teardown, rather than freed object by object when the run returns (~4 ms warm).
_KEPT_TO_EXIT: list[object] | None = None


def entry() -> NoReturn:
    """The `probelint` command: `main`, then exit without tearing the interpreter down. Freeing a
    loaded kernel's objects one by one costs a warm run ~15 ms; the exit handlers (the fact store
    writes what this run decoded) still run. Runs that started worker processes exit normally."""
    global _KEPT_TO_EXIT
    _KEPT_TO_EXIT = []
    try:
        code = main()
    except SystemExit as exc:  # argparse: --help, usage errors
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    if "multiprocessing" in sys.modules:  # worker pools (map, several kernels) are shut down by a normal exit
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    atexit._run_exitfuncs()  # what a normal exit would run, before skipping the teardown
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    # A run builds a few hundred thousand long-lived objects (the index, decoded functions) and
    # frees almost nothing: the default thresholds rescan them again and again (~15 % of a warm run).
    gc.set_threshold(100_000, 50, 100)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except BrokenPipeError:  # `probelint ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except InputError as exc:
        print(f"probelint: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug, or input no check foresaw: still one line, never a traceback
        if os.environ.get("PROBELINT_DEBUG"):
            raise
        where = " ".join(a for a in argv if not a.startswith("-")) or "probelint"
        print(printable(f"probelint: error: {where}: internal error {type(exc).__name__}: {exc} "
                        "(PROBELINT_DEBUG=1 shows the traceback; please report it)"), file=sys.stderr)
        return 2


def _dispatch(argv: list[str]) -> int:
    """The subcommands (a file of the same name wins: `probelint map` may name a probe file), and
    the lint run; every one of them under `main`'s error handling."""
    command = argv[0] if argv and argv[0] in _SUBCOMMANDS and not os.path.isfile(argv[0]) else None
    if command == "vmtest":
        from probelint.vmtest.cli import main as vmtest_main

        return vmtest_main(argv[1:])
    if command == "explain":
        return _explain(argv[1:])
    if command == "map":
        return _map(argv[1:])
    if command is not None:
        return _subcommand(argv)
    return _run(_parser().parse_intermixed_args(argv))


def _run(args: argparse.Namespace) -> int:
    config = _settings(args)
    if args.show_config:
        sys.stdout.write(config.as_toml())
        return 0
    for image in config.kernel:
        if not _is_elf(image):
            raise InputError(image, "not an ELF file (--kernel wants a vmlinux or .ko)")
    if not args.paths:
        raise InputError("probelint", "no probe file given (use '-' to read probes from stdin)")
    images = config.kernel + [p for p in args.paths if _is_elf(p)]
    probe_files = [p for p in args.paths if p not in images]
    if not images and config.live:
        from probelint.live import live_images, read_live

        found, why_not = live_images(read_live(config.live_root))
        images = list(found)
        for line in why_not if args.verbose else ():
            print(printable(f"probelint: {line}"), file=sys.stderr)
        print(printable(f"probelint: --live: the running kernel through {' with '.join(images)}"), file=sys.stderr)
    if not images:
        from probelint.discover import find_running_kernel

        if len(probe_files) > 1 and probe_files[0] != "-":  # most likely a damaged image named first
            raise InputError(probe_files[0], "not an ELF file, and no other kernel image was given")
        found, why_not = find_running_kernel()
        images = [str(p) for p in found]
        for line in why_not if args.verbose else ():
            print(printable(f"probelint: {line}"), file=sys.stderr)
        print(printable(f"probelint: no image given: using {' with '.join(images)}, the running kernel's"),
              file=sys.stderr)
    if not probe_files:
        raise InputError(images[-1], "no probe file given (use '-' to read probes from stdin)")
    config.selected()  # an unknown rule id in select/ignore is an error before any work
    from probelint.pipeline import parse_texts, read_texts

    texts = read_texts(probe_files)
    parsed = parse_texts(texts, config.source_type)
    groups = _kernels(images)
    if len(groups) == 1:
        if args.fix or args.unsafe_fixes or args.diff:
            from probelint import fixes

            failed, output = fixes.fix_files(
                texts, lambda now: _check_kernel(args, config, groups[0], parse_texts(now, config.source_type)),
                kind=config.source_type, unsafe=args.unsafe_fixes, diff=args.diff)
        else:
            failed, output, results = _check_kernel(args, config, groups[0], parsed)
            if _KEPT_TO_EXIT is not None:
                _KEPT_TO_EXIT.append(results)
        sys.stdout.write(output)
        return 1 if failed else 0
    if args.format not in ("text", "json"):
        raise InputError(groups[1][0], f"--format {args.format} takes one kernel per run (text and json take several)")
    if args.fix or args.unsafe_fixes or args.diff:
        raise InputError(groups[1][0], "--fix/--diff take one kernel per run")
    import concurrent.futures
    import multiprocessing

    config.jobs = 1  # one process per kernel already
    jobs = [(args, config, group, parsed) for group in groups]
    with concurrent.futures.ProcessPoolExecutor(min(len(jobs), os.cpu_count() or 1),
                                                mp_context=multiprocessing.get_context("fork")) as pool:
        outcomes = list(pool.map(_check_kernel_job, jobs))
    if args.format == "json":
        import json

        reports = [json.loads(out) for _, out in outcomes]
        merged = {"schema_version": reports[0]["schema_version"], "kernels": reports}
        sys.stdout.write(json.dumps(merged, indent=2) + "\n")
    else:
        for group, (_, out) in zip(groups, outcomes, strict=True):
            sys.stdout.write(f"== kernel {group[0]} ==\n{out}")
    return 1 if any(failed for failed, _ in outcomes) else 0


def _kernels(images: list[str]) -> list[list[str]]:
    """One group per vmlinux (several kernels are checked side by side, in parallel), each with
    the modules built for it (matched by release: vermagic against the banner); modules alone
    form one group. Only the ELF header is read unless there are several vmlinux images."""
    from probelint.image.elf import is_module_file
    from probelint.image.symbol_map import is_symbol_map_file

    maps = {p: is_symbol_map_file(p) for p in images}
    vmlinuxes = [p for p in images if not maps[p] and not is_module_file(p)]
    if len(vmlinuxes) <= 1:
        return [images]
    from probelint.image.kernel import open_image

    modules = [(p, open_image(p).version) for p in images if p not in vmlinuxes and not maps[p]]
    # a symbol map belongs to the vmlinux named before it
    owner = {p: max((v for v in vmlinuxes if images.index(v) < images.index(p)), key=images.index, default=None)
             for p in images if maps[p]}
    groups = []
    for path in vmlinuxes:
        own_maps = [m for m, v in owner.items() if v == path]
        release = (open_image(path, symbol_map=own_maps[0] if own_maps else None).version or "").split()[2:3]
        mine = [p for p, vermagic in modules if not release or not vermagic or vermagic.split()[0] == release[0]]
        groups.append([path, *own_maps, *mine])
    return groups


Job = tuple[argparse.Namespace, "Config", list[str], list["Parsed"]]


def _check_kernel_job(job: Job) -> tuple[bool, str]:
    failed, output, _ = _check_kernel(*job)
    return failed, output


def _check_kernel(args: argparse.Namespace, config: Config, images: list[str],
                  parsed: list[Parsed]) -> tuple[bool, str, list[ProbeResult]]:
    """Check the probes against one kernel: (any finding at or above the fail level, rendered
    output, the results)."""
    from probelint.pipeline import load, run

    kernel = load(config, images, parsed)
    if args.verbose:
        _describe_kernel(kernel)
    report = run(config, kernel, parsed)
    if args.verbose:
        taken, store = report.stored or (0, "")
        print(f"probelint: {taken} of {len(report)} probes' results taken from {store}, the rest checked "
              "(--no-cache: every probe checked)" if store else
              "probelint: probes' results not kept (--no-cache, --live, or an image without a build-id)",
              file=sys.stderr)
    return report.failed, _render(args, report), report.results


def _describe_kernel(kernel: Kernel) -> None:
    """--verbose: every assumption behind the verdicts, on stderr."""
    say = lambda text: print(f"probelint: {text}", file=sys.stderr)  # noqa: E731
    for image in kernel.images:
        version = image.version or "no version string"
        say(f"image {image.path}: {image.name}, build-id {image.elf.build_id()}, {version}")
        if image.elf.bzimage:
            say("  the vmlinux decompressed from that bzImage (kept in the cache for the next run)")
        symbol_map = getattr(image, "symbol_map", None)
        if symbol_map is not None:
            say(f"  symbols from {symbol_map.path} (the image has no .symtab)")
    say(f"kernel version: {kernel.version or 'unknown (rules follow 6.1)'}")
    say(f"cpu profile: {kernel.profile.value} (the CPU whose boot-time patching of the text the verdicts assume)")
    if kernel.vmlinux is None and kernel.modules:
        from probelint.discover import vmlinux_places

        first = kernel.modules[0]
        release = (first.version or "").split(" ", 1)[0]
        looked = ", ".join(map(str, vmlinux_places(first.path, release))) if release else "nowhere (no vermagic)"
        say(f"no vmlinux given or found for {first.path} ({release or 'release unknown'}); looked in: {looked}; "
            "what only the vmlinux decides is not checked (KP412)")
    modules = ", ".join(m.name for m in kernel.modules) or "none"
    say(f"modules assumed loaded: {modules} (a plain SYM is unique only across vmlinux and these)")
    if kernel.config is not None:
        for line in kernel.config.describe():
            say(f"  {line}")
    from probelint.image.changes import CHANGES  # the change table, answered for this kernel

    for change in CHANGES:
        found = kernel.change(change)
        say(f"  change {change}: {'yes' if found.value else 'no'} ({found.reason})")
    for line in kernel.assumptions:
        say(f"  unvalidated: {line}")


def _render(args: argparse.Namespace, report: Report) -> str:
    if args.format == "text":
        from probelint.report import text

        colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty() and
                                             "NO_COLOR" not in os.environ)
        return text.render(report, colour=colour)
    import importlib

    return importlib.import_module(f"probelint.report.{args.format}").render(report)
