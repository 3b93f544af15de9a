"""Command line of the VM harness (``python -m probelint.vmtest``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .download import HarnessUnavailable
from .runner import DEFAULT_KERNEL_PACKAGE, GuestBootError, run_probes_report


def read_probe_file(text: str) -> tuple[list[str], list[list[int]] | None]:
    """Parse a probe file: one spec per line, ``#`` comments; a ``---`` line starts a new phase."""
    specs: list[str] = []
    phases: list[list[int]] = [[]]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line == "---":
            phases.append([])
            continue
        phases[-1].append(len(specs))
        specs.append(line)
    return specs, (phases if len(phases) > 1 else None)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (also used by the lead's ``probelint vmtest``)."""
    p = argparse.ArgumentParser(prog="python -m probelint.vmtest", description=__doc__)
    p.add_argument("probes", nargs="+", help="probe files ('-' = stdin); one spec per line, '---' separates phases")
    p.add_argument("--kernel-package", default=DEFAULT_KERNEL_PACKAGE)
    p.add_argument("--cpu", default="qemu64", help="QEMU CPU model (qemu64, EPYC-Rome, Skylake-Client-v4, ...)")
    p.add_argument("--module", action="append", default=[], help="module to insmod first (repeatable)")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--batch-size", type=int, default=300)
    p.add_argument("--cmdline", default="", help="extra kernel command line")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("-v", "--verbose", action="store_true", help="boot timings and CPU profile on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    text = "".join(sys.stdin.read() if f == "-" else Path(f).read_text() for f in args.probes)
    specs, phases = read_probe_file(text)
    log = (lambda m: print(m, file=sys.stderr)) if args.verbose else None
    try:
        report = run_probes_report(
            specs,
            kernel_package=args.kernel_package,
            cpu=args.cpu,
            modules=args.module,
            cache_dir=args.cache_dir,
            phases=phases,
            batch_size=args.batch_size,
            cmdline_extra=args.cmdline,
            log=log,
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
            "cpu": args.cpu,
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
