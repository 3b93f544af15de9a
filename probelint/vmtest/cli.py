"""``probelint vmtest`` (also ``python -m probelint.vmtest``): grade probelint against a booted kernel.

With probe files, every probe is shown with the kernel's verdict next to probelint's; with
``--sample N`` the probes are drawn from the kernel (:mod:`.sampler`).  ``--kernel-only`` boots
the kernel and prints only its verdicts (the harness's original output).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probelint.errors import InputError
from probelint.fileio import read_regular

from .download import HarnessUnavailable
from .runner import DEFAULT_KERNEL_PACKAGE, GuestBootError, run_probes_report
from .vm import DEFAULT_CPU

if TYPE_CHECKING:
    from .compare import CpuRun

MAX_REPORT = 256 << 20  # a --json report of 10,000 probes on three CPUs is ~20 MiB


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``probelint vmtest`` (also ``python -m probelint.vmtest``)."""
    p = argparse.ArgumentParser(
        prog="probelint vmtest",
        description="Boot a real Debian kernel under QEMU, register the probes in it and put its verdict "
        "next to probelint's (agreement per category, every disagreement).",
    )
    p.add_argument("probes", nargs="*", help="probe files ('-' = stdin); one spec per line, '# category' "
                   "comments as written by --save-sample, '---' separates phases")
    p.add_argument("--kernel-package", default=DEFAULT_KERNEL_PACKAGE)
    p.add_argument("--cpu", action="append", default=[],
                   help="QEMU CPU model, repeatable or comma-separated "
                   "(default qemu64; EPYC-Rome, Skylake-Client-v4, ...)")
    p.add_argument("--module", action="append", default=[], help="module to insmod first (repeatable), e.g. xfs")
    p.add_argument("--pending", action="store_true",
                   help="define the probes (and enable them) before the --module's are loaded: module probes are "
                        "held pending and registered as their module arrives")
    p.add_argument("--sample", type=int, metavar="N", help="draw about N probes from the kernel instead of probe files")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument("--category", action="append", default=[],
                   help="limit --sample to these categories (the module_* site categories, "
                        "module_jump_label ... module_duplicate_name, are drawn only when named)")
    p.add_argument("--save-sample", type=Path, metavar="FILE", help="write the probes (with categories) to FILE")
    p.add_argument("--dry-run", action="store_true", help="draw/read the probes (and --save-sample) without booting")
    p.add_argument("--vmlinux", type=Path, help="vmlinux for probelint (default: from the -dbg package)")
    p.add_argument("--ko", type=Path, action="append", default=[],
                   help="module .ko for probelint (default: --module's from the -dbg package)")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--batch-size", type=int, default=300)
    p.add_argument("--cmdline", default="", help="extra kernel command line")
    p.add_argument("--json", action="store_true", help="JSON on stdout instead of text")
    p.add_argument("--json-file", type=Path, metavar="FILE", help="also write the JSON to FILE")
    p.add_argument("--write-validation", type=Path, metavar="MD", help="regenerate docs/validation.md from this run")
    p.add_argument("--from-json", type=Path, metavar="FILE",
                   help="re-render a --json-file of an earlier run (text, --json, --write-validation) without booting")
    p.add_argument("--per-probe", action="store_true", help="with --sample: list every probe (default for files)")
    p.add_argument("--pairs", type=int, metavar="N",
                   help="interaction check: N probe pairs through jump windows, registered A-then-B, B-then-A "
                        "and together (3 boots per CPU model)")
    p.add_argument("--write-pairs", type=Path, metavar="MD", help="with --pairs: write the result table to MD")
    p.add_argument("--kernel-only", action="store_true", help="only boot the kernel; print its verdicts")
    p.add_argument("--live-check", action="store_true",
                   help="run `probelint --live` inside the guest (the host's root shared read-only over virtiofs, "
                        "chroot) on the last phase's probes (or --sample's) after registering the others, then "
                        "register them and grade it against the guest's kprobes/list")
    p.add_argument("--register-kprobe", action="store_true",
                   help="register the probes with register_kprobe() from a test module (kmod/plkprobe.c, built "
                        "against the Debian headers) instead of kprobe_events, graded against probelint's "
                        "register_kprobe-path verdicts (SYM[+OFF] probes only)")
    p.add_argument("--dump-kallsyms", type=Path, metavar="DIR",
                   help="with --live-check: write the guest's /proc/kallsyms and /proc/modules (as root) to DIR")
    p.add_argument("-v", "--verbose", action="store_true", help="boot timings and CPU profile on stderr")
    return p


def _cpus(args: argparse.Namespace) -> list[str]:
    cpus = [c.strip() for arg in args.cpu for c in arg.split(",") if c.strip()]
    return list(dict.fromkeys(cpus)) or [DEFAULT_CPU]


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.dump_kallsyms is not None and not args.live_check:
        parser.error("--dump-kallsyms needs --live-check (the guest's dump is taken in that run)")
    if args.from_json:
        return _from_json(args)
    if args.pairs is not None:
        return _pairs(args)
    if args.live_check:
        return _live_check(args)
    if args.register_kprobe:
        return _register_kprobe(args)
    if (args.sample is None) == (not args.probes):
        parser.error("give probe files or --sample N (not both)")
    if args.kernel_only:
        if args.sample is not None:
            parser.error("--kernel-only needs probe files")
        return _kernel_only(args)
    say = (lambda m: print(m, file=sys.stderr)) if args.verbose else (lambda _m: None)
    try:
        return _compare(args, say)
    except (HarnessUnavailable, GuestBootError, FileNotFoundError) as exc:
        print(f"vmtest: {exc}", file=sys.stderr)
        return 2


def _pairs(args: argparse.Namespace) -> int:
    import probelint

    from .compare import debug_images
    from .pairs import draw_pairs, render_pairs, run_pairs

    say = (lambda m: print(m, file=sys.stderr)) if args.verbose else (lambda _m: None)
    try:
        images = [args.vmlinux] if args.vmlinux else debug_images(args.kernel_package, [], args.cache_dir)
        kernel = probelint.load_kernel(images)
        pairs = draw_pairs(kernel, args.pairs, args.seed)
        sections = []
        for cpu in _cpus(args):
            outcomes = run_pairs(pairs, kernel, kernel_package=args.kernel_package, cpu=cpu, log=say)
            sections.append(f"## CPU model `{cpu}`\n\n{render_pairs(outcomes)}")
    except (HarnessUnavailable, GuestBootError, FileNotFoundError) as exc:
        print(f"vmtest: {exc}", file=sys.stderr)
        return 2
    body = "\n".join(sections)
    print(body)
    if args.write_pairs:
        args.write_pairs.write_text(
            "<!-- GENERATED by `probelint vmtest --pairs` (scripts/vmtest_full.sh). Do not edit by hand. -->\n\n"
            f"# Probe interaction: probelint against a booted kernel\n\nGenerated {datetime.date.today()} with "
            f"`probelint vmtest --pairs {args.pairs} --seed {args.seed}` on `{args.kernel_package}`: "
            f"{len(pairs)} pairs (A optimizable alone; B inside A's jump window, or just past it as a "
            f"control), each registered A then B, B then A, and together; final `[OPTIMIZED]` state of A "
            f"and B compared with probelint's verdict for the set.\n\n{body}")
    return 0


def _live_check(args: argparse.Namespace) -> int:
    """--live-check: the probes of every phase but the last registered first, probelint --live run
    in the guest on the rest (with --sample N: N drawn probes, after all the files' probes)."""
    import probelint

    from .compare import CpuRun, debug_images, render_text
    from .livecheck import run_live_check
    from .sampler import draw_sample, read_probes

    say = (lambda m: print(m, file=sys.stderr)) if args.verbose else (lambda _m: None)
    try:
        # --module: loaded in the guest too, and found by probelint there in the -dbg tree beside the vmlinux
        images = debug_images(args.kernel_package, args.module, args.cache_dir)
        image = args.vmlinux or images[0]
        kernel = probelint.load_kernel([image, *images[1:]])
        samples, phases = read_probes(args.probes, kernel, skipped=say) if args.probes else ([], None)
        if args.sample is not None:
            before, linted = samples, draw_sample(kernel, args.sample, args.seed, categories=args.category or None)
        else:
            last = set(phases[-1]) if phases else set(range(len(samples)))
            before = [s for k, s in enumerate(samples) if k not in last]
            linted = [s for k, s in enumerate(samples) if k in last]
        del kernel
        if args.dump_kallsyms:
            args.dump_kallsyms.mkdir(parents=True, exist_ok=True)
        cpu = _cpus(args)[0]
        result = run_live_check(before, linted, image, kernel_package=args.kernel_package, cpu=cpu,
                                cache_dir=args.cache_dir, dump_to=args.dump_kallsyms, log=say, modules=args.module)
    except (HarnessUnavailable, GuestBootError, FileNotFoundError) as exc:
        print(f"vmtest: {exc}", file=sys.stderr)
        return 2
    boot = result.boot
    if boot is not None:
        lint = boot.milestones.get("1:lint-done" if before else "0:lint-done", 0) - \
            boot.milestones.get("1:lint-start" if before else "0:lint-start", 0)
        print(f"probelint --live in the guest: exit {result.returncode}, {lint:.1f}s guest time; "
              f"{len(before)} probes registered before it, {len(linted)} linted")
    for line in result.stderr:
        print(f"  stderr: {line}")
    print(render_text([CpuRun(cpu, result.comparisons, [boot] if boot else [])], per_probe=True))
    return 0


def _register_kprobe(args: argparse.Namespace) -> int:
    import probelint

    from .compare import CpuRun, debug_images, render_text
    from .kprobe_module import POINT, grade_register_kprobe
    from .sampler import draw_sample, read_probes

    say = (lambda m: print(m, file=sys.stderr)) if args.verbose else (lambda _m: None)
    try:
        kernel = probelint.load_kernel([args.vmlinux or debug_images(args.kernel_package, [], args.cache_dir)[0]])
        samples = read_probes(args.probes, kernel, skipped=say)[0] if args.probes else []
        if args.sample is not None:
            samples += draw_sample(kernel, args.sample, args.seed, categories=args.category or None)
        # register_kprobe() takes a symbol and an offset: no module, return or address probe
        points = [s for s in samples if POINT.fullmatch(s.spec)]
        for s in samples:
            if s not in points:
                say(f"{s.spec}: not a SYM[+OFF] point, left out")
        cpu = _cpus(args)[0]
        comps, info = grade_register_kprobe(kernel, points, cpu=cpu, kernel_package=args.kernel_package,
                                            cache_dir=args.cache_dir, log=say)
    except (HarnessUnavailable, GuestBootError, FileNotFoundError) as exc:
        print(f"vmtest: {exc}", file=sys.stderr)
        return 2
    print(f"register_kprobe() from plkprobe.ko: {len(points)} points")
    print(render_text([CpuRun(cpu, comps, [info])], per_probe=True))
    return 0


def _compare(args: argparse.Namespace, say) -> int:
    import probelint

    from .compare import debug_images, run_comparison, to_json
    from .sampler import draw_sample, format_sample_file, plan_batches, read_probes

    if args.vmlinux:
        images = [args.vmlinux, *args.ko]
    else:
        images = debug_images(args.kernel_package, args.module if not args.ko else [], args.cache_dir) + args.ko
    say(f"probelint images: {', '.join(map(str, images))}")
    kernel = probelint.load_kernel(images)
    phases = None
    if args.sample is not None:
        samples = draw_sample(kernel, args.sample, args.seed, categories=args.category or None)
        samples = plan_batches(samples, args.batch_size)
        source = f"--sample {args.sample} --seed {args.seed}"
    else:
        samples, phases = read_probes(args.probes, kernel, skipped=say)
        source = ", ".join(args.probes)
    say(f"{len(samples)} probes")
    if args.save_sample:
        header = (f"probelint vmtest sample: {source}, kernel {args.kernel_package}, "
                  f"modules {','.join(args.module) or '-'}\nspec  # category [function] note")
        args.save_sample.write_text(format_sample_file(samples, header))
    if args.dry_run:
        for s in samples:
            print(f"{s.spec}  # {s.category}")
        return 0
    cpus = _cpus(args)
    runs = run_comparison(samples, kernel=kernel, kernel_package=args.kernel_package, cpus=cpus,
                          modules=args.module, cache_dir=args.cache_dir, batch_size=args.batch_size,
                          phases=phases, cmdline_extra=args.cmdline, log=say, pending=args.pending)
    meta = {
        "date": datetime.date.today().isoformat(),
        "kernel_package": args.kernel_package,
        "modules": args.module,
        "pending": args.pending,
        "probe_count": len(samples),
        "source": source,
        "seed": args.seed if args.sample is not None else None,
        "command": "probelint vmtest " + " ".join(args.argv),
    }
    data = to_json(runs, meta)
    if args.json_file:
        args.json_file.write_text(json.dumps(data, indent=1) + "\n")
    return _report(args, runs, meta, data, per_probe=args.per_probe or args.sample is None)


def _report(args: argparse.Namespace, runs: list[CpuRun], meta: dict[str, Any], data: dict[str, Any], *,
            per_probe: bool) -> int:
    """The validation page if asked for, then JSON or the text report on stdout."""
    from .compare import render_text, render_validation

    if args.write_validation:
        args.write_validation.write_text(render_validation(runs, meta))
    if args.json:
        json.dump(data, sys.stdout, indent=1)
        print()
    else:
        print(render_text(runs, per_probe=per_probe))
    return 0


def _from_json(args: argparse.Namespace) -> int:
    from .compare import runs_from_json

    where = str(args.from_json)
    try:
        data = json.loads(read_regular(args.from_json, MAX_REPORT, "a vmtest report"))
        runs = runs_from_json(data)
    except (ValueError, LookupError, TypeError, AttributeError) as exc:  # not what --json wrote
        raise InputError(where, f"not a vmtest --json report ({type(exc).__name__}: {exc})") from None
    meta = {k: v for k, v in data.items() if k not in ("probes", "summary", "boots", "fields", "cpus")}
    meta.setdefault("probe_count", len(runs[0].comparisons) if runs else 0)
    return _report(args, runs, meta, data, per_probe=args.per_probe)


def _kernel_only(args: argparse.Namespace) -> int:
    from .sampler import read_probes

    samples, phases = read_probes(args.probes, skipped=lambda m: print(f"vmtest: {m}", file=sys.stderr))
    specs = [s.spec for s in samples]
    log = (lambda m: print(m, file=sys.stderr)) if args.verbose else None
    try:
        report = run_probes_report(
            specs,
            kernel_package=args.kernel_package,
            cpu=_cpus(args)[0],
            modules=args.module,
            cache_dir=args.cache_dir,
            phases=phases,
            batch_size=args.batch_size,
            cmdline_extra=args.cmdline,
            log=log,
            pending=args.pending,
        )
    except (HarnessUnavailable, GuestBootError) as exc:
        print(f"vmtest: {exc}", file=sys.stderr)
        return 2
    if args.verbose:
        for b in report.boots:
            print(
                f"boot of {len(b.indices)} probes: {b.elapsed:.1f}s wall, guest milestones {b.milestones}, "
                f"settle {b.settle}, cpu {b.cpu_model!r}, modules {b.modules}",
                file=sys.stderr,
            )
        if report.boots:
            v = report.boots[0].vulnerabilities
            print("vulnerabilities: " + "; ".join(f"{k}: {x}" for k, x in sorted(v.items())), file=sys.stderr)
    if args.json:
        out = {
            "kernel_package": args.kernel_package,
            "cpu": _cpus(args)[0],
            "modules": args.module,
            "verdicts": [dataclasses.asdict(v) for v in report.verdicts],
            "boots": [dataclasses.asdict(b) for b in report.boots],
        }
        json.dump(out, sys.stdout, indent=1)
        print()
        return 0
    width = max((len(v.spec) for v in report.verdicts), default=10)
    for v in report.verdicts:
        status = "OK" if v.registered else (v.errno or "?")
        addr = f"{v.address:#x}" if v.address is not None else "-"
        extra = "" if v.registered else "  " + v.message.splitlines()[0] if v.message else ""
        if v.enable_error:
            extra += f"  enable: {v.enable_error}"
        if v.phase_flags and len(v.phase_flags) > 1:
            extra += "  phases: " + " | ".join("-" if f is None else (f or "int3") for f in v.phase_flags)
        print(f"{v.spec:<{width}}  {status:<13} {v.flags or '-':<18} {addr}{extra}")
    return 0
