#!/usr/bin/env python3
"""Grade probelint's verdicts on modules checked without their vmlinux (.ko alone) and with it
against a booted kernel's (docs/validation-modules.md): per module, the kernel's registered /
refused / optimized counts; for the .ko alone the false errors (refused where the kernel
registers), wrong verdicts (registers, errno, optimized or ftrace not the kernel's) and probes not
checked (KP412), and those whose registration is checked but not their optimization (KP412,
``optimized: null``); with the vmlinux, the probes agreeing on all four fields. Every disagreement is
listed with both verdicts and probelint's findings.

    python3 scripts/grade_ko_alone.py VMTEST.json ALONE.json WITH_VMLINUX.json
      (probelint vmtest --json-file; probelint --format json KO... PROBES; the same with the vmlinux)
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

FIELDS = ("registers", "errno", "optimized", "ftrace")
COLUMNS = ("probes", "registers", "refused", "optimized", "false_errors", "wrong", "not_checked",
           "optimization_not_checked", "agree_vmlinux")


def main(argv: list[str]) -> None:
    vmtest, alone, with_vmlinux = (json.loads(Path(p).read_text()) for p in argv)
    # vmtest writes SYM+0x0 as the canonical SYM it registers
    by_spec = [{p["spec"].removesuffix("+0x0"): p for p in report["probes"]} for report in (alone, with_vmlinux)]
    rows: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    disagreements = []
    for probe in vmtest["probes"]:
        spec, k = probe["spec"], probe["kernel"]
        kernel = {"registers": bool(k["registered"] or k.get("pending")), "errno": k["errno"],
                  "optimized": k["optimized"], "ftrace": k["ftrace"]}
        row = rows[spec.split(":")[0] if ":" in spec else "vmlinux"]
        row["probes"] += 1
        row["registers" if kernel["registers"] else "refused"] += 1
        row["optimized"] += bool(kernel["optimized"])
        a, b = (reports[spec.removesuffix("+0x0")] for reports in by_spec)
        # optimized null: registration checked, the optimization not (KP412); graded on the rest
        checked = [f for f in FIELDS if not (f == "optimized" and a["verdict"][f] is None)]
        if a["verdict"]["registers"] is None:
            row["not_checked"] += 1
        elif any(a["verdict"][f] != kernel[f] for f in checked):
            row["false_errors" if kernel["registers"] and a["verdict"]["registers"] is False else "wrong"] += 1
            disagreements.append(("alone", spec, kernel, a))
        elif len(checked) < len(FIELDS):
            row["optimization_not_checked"] += 1
        if all(b["verdict"][f] == kernel[f] for f in FIELDS):
            row["agree_vmlinux"] += 1
        else:
            disagreements.append(("with vmlinux", spec, kernel, b))
    total: collections.Counter[str] = collections.Counter()
    print("| module | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, row in rows.items():
        total.update(row)
        print(f"| {name} | " + " | ".join(str(row[c]) for c in COLUMNS) + " |")
    print("| total | " + " | ".join(str(total[c]) for c in COLUMNS) + " |")
    for run, spec, kernel, report in disagreements:
        findings = "; ".join(f"{f['rule']}: {f['message']}" for f in report["findings"])
        print(f"{run}: {spec}: kernel {kernel}, probelint {report['verdict']} ({findings})")


if __name__ == "__main__":
    main(sys.argv[1:])
