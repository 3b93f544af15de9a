"""Grade probelint against a booted kernel: same specs, both verdicts, agreement per category.

probelint's side comes from its public API (`probelint.check`) on the unstripped vmlinux (and
modules) of the ``-dbg`` package; the kernel's from :func:`probelint.vmtest.run_probes_report`
on the ``-unsigned`` image under QEMU, once per CPU model.  Both sides see the same spec strings,
so module probes are matched as ``MOD:SYM+OFF`` (their load addresses differ), never by address.

Probes the harness could not judge (``GUEST_CRASH``, ``NOT_RUN``) are counted apart and left out
of the agreement figures.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probelint.arch.x86.cpu import DEFAULT_PROFILE, CpuProfile

from .download import ensure_deb, ensure_debug_vmlinux, extract_members, kernel_abi, list_members
from .runner import (
    CRASH_ERRNO,
    DEFAULT_KERNEL_PACKAGE,
    BootInfo,
    KernelVerdict,
    loaded_modules,
    module_name,
    run_probes_report,
)
from .sampler import CATEGORIES, Sample
from .vm import DEFAULT_CPU

if TYPE_CHECKING:
    from probelint.image.kernel import Kernel

__all__ = [
    "FIELDS",
    "Comparison",
    "CpuRun",
    "agreement",
    "compare_verdicts",
    "debug_images",
    "probelint_verdicts",
    "render_text",
    "render_validation",
    "run_comparison",
    "runs_from_json",
    "to_json",
]

FIELDS = ("registers", "errno", "optimized", "ftrace")
HARNESS_ERRNOS = frozenset({CRASH_ERRNO, "NOT_RUN"})


@dataclass
class PredictedVerdict:
    """probelint's verdict for one spec, plus its findings (``rule``, ``severity``, ``message``)."""

    registers: bool
    errno: str | None
    optimized: bool
    ftrace: bool
    findings: list[dict[str, str]] = field(default_factory=list)
    address: int | None = None
    symbol: str | None = None


@dataclass
class Comparison:
    """One probe on one CPU model: what the kernel did, what probelint said, where they agree."""

    sample: Sample
    cpu: str
    kernel: KernelVerdict
    predicted: PredictedVerdict
    agree: dict[str, bool]

    @property
    def judged(self) -> bool:
        """False when the harness, not the kernel, decided (guest crash, probe not run)."""
        return self.kernel.errno not in HARNESS_ERRNOS

    def disagrees(self, fields: Iterable[str] = FIELDS) -> list[str]:
        return [f for f in fields if not self.agree[f]] if self.judged else []


@dataclass
class CpuRun:
    cpu: str
    comparisons: list[Comparison]
    boots: list[BootInfo] = field(default_factory=list)
    profile: str = ""  # the probelint --cpu-profile graded against this CPU model


# --------------------------------------------------------------------------- the two sides


def debug_images(kernel_package: str = DEFAULT_KERNEL_PACKAGE, modules: Iterable[str] = (),
                 cache_dir: Path | None = None) -> list[Path]:
    """The unstripped vmlinux and module ``.ko`` files (from the ``-dbg`` package) probelint reads."""
    paths = [ensure_debug_vmlinux(kernel_package, cache_dir)]
    mods = list(modules)
    if mods:
        abi = kernel_abi(kernel_package)
        deb = ensure_deb(f"linux-image-{abi}-dbg", cache_dir)
        members = list_members(deb)
        for mod in mods:
            want = {f"/{mod}.ko", f"/{mod.replace('_', '-')}.ko"}
            hit = next((m for m in members if f"/modules/{abi}/" in m and any(m.endswith(w) for w in want)), None)
            if hit is None:
                raise FileNotFoundError(f"module {mod} not in {deb.name}")
            paths.append(extract_members(deb, [hit]) / hit)
    return paths


def probelint_verdicts(kernel: Kernel, specs: list[str]) -> list[PredictedVerdict]:
    """probelint's verdict of each spec (one per spec, in order) via the public API."""
    import probelint

    out = []
    for res in probelint.check(kernel, specs, hints="never"):
        v = res.verdict
        ctx = res.context
        out.append(PredictedVerdict(
            registers=v.registers, errno=v.errno, optimized=v.optimized, ftrace=v.ftrace,
            findings=[{"rule": f.rule, "severity": str(f.severity), "message": f.message} for f in res.findings],
            address=ctx.address if ctx is not None else None,
            symbol=ctx.symbol.name if ctx is not None and ctx.symbol is not None else None,
        ))
    return out


def profile_for(cpu: str, cmdline: str = "") -> CpuProfile:
    """The --cpu-profile measured on QEMU model `cpu` booted with `cmdline` (arch/x86/cpu.py _MODELS' qemu
    field: the model, then the command-line options it needs), the most specific one that fits."""
    opts = set(cmdline.split())
    fits = [(len(words), p) for p in CpuProfile if (words := p.model.qemu.split())[0] == cpu and set(words[1:]) <= opts]
    return max(fits, key=lambda f: f[0])[1] if fits else DEFAULT_PROFILE


def load_failures(boots: list[BootInfo]) -> dict[str, str]:
    """The module files a boot could not insmod, with why: insmod's error, then the module's own
    dmesg lines (aesni_intel's init returns -ENODEV on a CPU without AES-NI)."""
    out: dict[str, str] = {}
    for boot in boots:
        for file, status in boot.modules.items():
            if status != "OK":
                log = [line for line in boot.module_log.get(file, []) if "trace_kprobe:" not in line]
                out[file] = " | ".join([status.removeprefix("ERR ").strip(), *log[-3:]])
    return out


def not_loaded(kernel: Kernel, boots: list[BootInfo]) -> dict[str, str]:
    """`load_failures` of the modules probelint was given, by module name."""
    loaded = set().union(*map(loaded_modules, boots)) if boots else set()
    return {name: why for file, why in load_failures(boots).items()
            if (name := module_name(file)) not in loaded and kernel.module(name) is not None}


def unloaded_verdicts(kernel: Kernel, specs: list[str], predicted: list[PredictedVerdict],
                      unloaded: Mapping[str, str] | set[str],
                      log: Callable[[str], None] | None = None) -> list[PredictedVerdict]:
    """`predicted`, with the probes the modules the guest did not load bear on checked again as the
    kernel saw them, against the images without those modules, known not to be loaded: plain-SYM
    probes (counted without them) and the MOD:SYM probes on them (held pending, KP413)."""
    if not unloaded:
        return predicted
    from probelint.image.kernel import Kernel as _Kernel
    from probelint.vmtest.runner import parse_spec

    if isinstance(unloaded, Mapping) and log:
        for name, why in unloaded.items():
            log(f"module {name} did not load: {why}")
    without = _Kernel(kernel.vmlinux, [m for m in kernel.modules if m.name not in unloaded], kernel.profile)
    without.unloaded = frozenset(unloaded)
    targets = [parse_spec(spec) for spec in specs]
    mine = [i for i, t in enumerate(targets)
            if (t.module is None and t.symbol is not None) or t.module in unloaded]
    out = list(predicted)
    for i, verdict in zip(mine, probelint_verdicts(without, [specs[i] for i in mine]), strict=True):
        out[i] = verdict
    return out


def killed_verdicts(specs: list[str], predicted: list[PredictedVerdict], failed: Mapping[str, str],
                    log: Callable[[str], None] | None = None) -> list[PredictedVerdict]:
    """`predicted` for probes defined before their modules loaded, when the modules `failed`
    (module name -> why) ran their init and failed: kprobes_module_callback kills every probe in
    such a module at MODULE_STATE_GOING, so one registered at arrival is neither optimized nor
    ftrace-armed any more (and no longer in kprobes/list)."""
    from probelint.vmtest.runner import parse_spec

    if log:
        for name, why in failed.items():
            log(f"module {name} did not load: {why}")
    return [replace(v, optimized=False, ftrace=False) if parse_spec(spec).module in failed else v
            for spec, v in zip(specs, predicted, strict=True)]


def flags_mismatch(profile: CpuProfile, boot: BootInfo) -> str | None:
    """How the guest's /proc/cpuinfo flags/bugs differ from `profile`'s (None: they match or were not recorded)."""
    if not boot.cpu_flags:
        return None
    diffs = []
    for what, ours, theirs in (("flags", profile.model.flags, boot.cpu_flags),
                               ("bugs", profile.model.bugs, boot.cpu_bugs)):
        missing, extra = set(theirs) - set(ours.split()), set(ours.split()) - set(theirs)
        if missing or extra:
            diffs.append(f"{what}: guest only {sorted(missing)}, profile only {sorted(extra)}")
    return "; ".join(diffs) or None


def compare_verdicts(sample: Sample, cpu: str, kv: KernelVerdict, pv: PredictedVerdict) -> Comparison:
    agree = {
        "registers": kv.registered == pv.registers,
        "errno": kv.errno == pv.errno,
        "optimized": kv.optimized == pv.optimized,
        "ftrace": kv.ftrace == pv.ftrace,
    }
    return Comparison(sample, cpu, kv, pv, agree)


def run_comparison(
    samples: list[Sample],
    *,
    kernel: Kernel,
    kernel_package: str = DEFAULT_KERNEL_PACKAGE,
    cpus: Iterable[str] = (DEFAULT_CPU,),
    modules: Iterable[str] = (),
    cache_dir: Path | None = None,
    batch_size: int = 300,
    phases: list[list[int]] | None = None,
    cmdline_extra: str = "",
    log: Callable[[str], None] | None = None,
    pending: bool = False,
) -> list[CpuRun]:
    """Run `samples` through probelint (once) and the booted kernel (once per CPU model). A module
    the guest could not load (aesni_intel without AES-NI) holds its probes pending: they are
    graded against probelint's verdict for a kernel without that module (`unloaded_verdicts`).
    With `pending` the probes are defined before the modules load: probelint is asked with every
    module arriving (`Kernel.arrive`)."""
    specs = [s.spec for s in samples]
    runs = []
    for cpu in cpus:
        profile = profile_for(cpu, cmdline_extra)
        kernel = kernel.with_profile(profile)
        kernel.arrive([m.name for m in kernel.modules] if pending else [])
        # one probe set per boot batch, as the kernel sees them (run_probes batches in order)
        step = max(1, batch_size) if phases is None else len(specs)
        predicted = [v for start in range(0, len(specs), step)
                     for v in probelint_verdicts(kernel, specs[start:start + step])]
        if log:
            log(f"cpu {cpu} (probelint --cpu-profile {profile.value}): {len(specs)} probes")
        rep = run_probes_report(specs, kernel_package=kernel_package, cpu=cpu, modules=list(modules),
                                cache_dir=cache_dir, batch_size=batch_size, phases=phases,
                                cmdline_extra=cmdline_extra, log=log, pending=pending)
        if pending:
            # a MOD:SYM met its module at MODULE_STATE_COMING, even one whose init then failed
            predicted = killed_verdicts(specs, predicted, not_loaded(kernel, rep.boots), log)
        else:
            predicted = unloaded_verdicts(kernel, specs, predicted, not_loaded(kernel, rep.boots), log)
        mismatch = next((m for b in rep.boots if (m := flags_mismatch(profile, b))), None)
        if mismatch and log:
            log(f"WARNING: cpu {cpu}: the guest's CPU features differ from --cpu-profile {profile.value}: {mismatch}")
        comps = [compare_verdicts(s, cpu, kv, pv) for s, kv, pv in zip(samples, rep.verdicts, predicted, strict=True)]
        runs.append(CpuRun(cpu, comps, rep.boots, profile.value))
    return runs


# --------------------------------------------------------------------------- statistics


def agreement(comps: list[Comparison]) -> dict[str, dict[str, Any]]:
    """Per category (and ``TOTAL``): probes, harness failures and ``{field: [agree, judged]}``."""
    table: dict[str, dict[str, Any]] = {}
    order = [c for c in CATEGORIES if any(x.sample.category == c for x in comps)]
    order += sorted({x.sample.category for x in comps} - set(order))
    for cat in [*order, "TOTAL"]:
        rows = comps if cat == "TOTAL" else [x for x in comps if x.sample.category == cat]
        judged = [x for x in rows if x.judged]
        entry: dict[str, Any] = {"probes": len(rows), "harness": len(rows) - len(judged)}
        for f in FIELDS:
            entry[f] = [sum(x.agree[f] for x in judged), len(judged)]
        entry["kernel_outcomes"] = dict(Counter(verdict_text(x.kernel) for x in judged).most_common())
        table[cat] = entry
    return table


def verdict_text(v: KernelVerdict | PredictedVerdict) -> str:
    registered = v.registered if isinstance(v, KernelVerdict) else v.registers
    if not registered:
        return v.errno or "refused"
    if isinstance(v, KernelVerdict) and v.pending:
        return "pending"
    return "OPTIMIZED" if v.optimized else "FTRACE" if v.ftrace else "int3"


def _pct(a: int, n: int) -> str:
    return f"{a}/{n} {100.0 * a / n:5.1f}%" if n else "-"


def _findings_text(pv: PredictedVerdict) -> str:
    return "; ".join(f"{f['rule']}: {f['message']}" for f in pv.findings) or "(no findings)"


def _kernel_text(kv: KernelVerdict) -> str:
    msg = kv.message.splitlines()[0] if kv.message else ""
    extra = f" ({msg})" if msg else ""
    if kv.enable_error:
        extra += f" [enable: {kv.enable_error}]"
    return verdict_text(kv) + extra


# --------------------------------------------------------------------------- rendering


def render_table(comps: list[Comparison]) -> list[str]:
    table = agreement(comps)
    width = max(len(c) for c in table)
    head = f"{'category':<{width}}  {'n':>5}  " + "  ".join(f"{f:<16}" for f in FIELDS)
    lines = [head, "-" * len(head)]
    for cat, e in table.items():
        cells = "  ".join(f"{_pct(*e[f]):<16}" for f in FIELDS)
        harness = f"  ({e['harness']} not judged)" if e["harness"] else ""
        lines.append(f"{cat:<{width}}  {e['probes']:>5}  {cells}{harness}")
    return lines


def render_probes(comps: list[Comparison]) -> list[str]:
    """One line per probe: kernel verdict next to probelint's."""
    width = max((len(x.sample.spec) for x in comps), default=10)
    lines = [f"{'spec':<{width}}  {'kernel':<12} {'probelint':<12} {'':4} findings"]
    for x in comps:
        mark = "ok" if not x.disagrees() else "DIFF"
        rules = ",".join(f["rule"] for f in x.predicted.findings) or "-"
        kmsg = ""
        if not x.kernel.registered and x.kernel.message:
            kmsg = "  kernel: " + x.kernel.message.splitlines()[0]
        lines.append(f"{x.sample.spec:<{width}}  {verdict_text(x.kernel):<12} {verdict_text(x.predicted):<12} "
                     f"{mark:4} {rules}{kmsg}")
    return lines


def render_disagreements(comps: list[Comparison]) -> list[str]:
    lines = []
    hard = [x for x in comps if x.disagrees(("registers", "errno", "ftrace"))]
    soft = [x for x in comps if x.disagrees() == ["optimized"]]
    harness = [x for x in comps if not x.judged]
    lines.append(f"disagreements on registers/errno/ftrace: {len(hard)}")
    for x in hard:
        lines += [
            f"  {x.sample.spec}  [{x.sample.category}] fields: {','.join(x.disagrees())}",
            f"      kernel:    {_kernel_text(x.kernel)}",
            f"      probelint: {verdict_text(x.predicted)}  {_findings_text(x.predicted)}",
        ]
    lines.append(f"disagreements on optimized only: {len(soft)}")
    for x in soft:
        lines.append(f"  {x.sample.spec}  [{x.sample.category}] kernel {verdict_text(x.kernel)}, "
                     f"probelint {verdict_text(x.predicted)}")
    if harness:
        lines.append(f"not judged (harness): {len(harness)}")
        for x in harness:
            lines.append(f"  {x.sample.spec}  [{x.sample.category}] {x.kernel.errno}")
    return lines


def render_text(runs: list[CpuRun], *, per_probe: bool = False) -> str:
    out: list[str] = []
    for run in runs:
        out.append(f"== CPU model {run.cpu}: {len(run.comparisons)} probes, {len(run.boots)} boot(s)")
        out += [f"module {file} did not load: {why}" for file, why in load_failures(run.boots).items()]
        if per_probe:
            out += render_probes(run.comparisons)
            out.append("")
        out += render_table(run.comparisons)
        out.append("")
        out += render_disagreements(run.comparisons)
        out.append("")
    return "\n".join(out)


def to_json(runs: list[CpuRun], meta: dict[str, Any]) -> dict[str, Any]:
    def kernel(kv: KernelVerdict) -> dict[str, Any]:
        d = asdict(kv)
        return {k: d[k] for k in ("registered", "errno", "optimized", "ftrace", "disabled", "address", "message",
                                  "enable_error", "listed", "pending", "gone")}

    return {
        **meta,
        "fields": list(FIELDS),
        "cpus": [r.cpu for r in runs],
        "profiles": {r.cpu: r.profile for r in runs},
        "summary": {r.cpu: agreement(r.comparisons) for r in runs},
        "boots": {r.cpu: [{"probes": len(b.indices), "elapsed": round(b.elapsed, 1), "completed": b.completed,
                           "cpu_model": b.cpu_model, "vulnerabilities": b.vulnerabilities,
                           "cpu_flags": b.cpu_flags, "cpu_bugs": b.cpu_bugs, "mitigations": b.mitigations,
                           "modules": b.modules, "module_log": b.module_log}
                          for b in r.boots] for r in runs},
        "probes": [
            {
                "spec": x.sample.spec,
                "category": x.sample.category,
                "function": x.sample.function,
                "note": x.sample.note,
                "cpu": x.cpu,
                "judged": x.judged,
                "agree": x.agree,
                "kernel": kernel(x.kernel),
                "probelint": asdict(x.predicted),
            }
            for r in runs
            for x in r.comparisons
        ],
    }


def runs_from_json(data: dict[str, Any]) -> list[CpuRun]:
    """Rebuild the runs of a :func:`to_json` document (to re-render without booting)."""
    runs = []
    for cpu in data["cpus"]:
        comps = []
        for p in (p for p in data["probes"] if p["cpu"] == cpu):
            k = p["kernel"]
            kv = KernelVerdict(p["spec"], k["registered"], k["errno"], k["message"], k["optimized"], k["ftrace"],
                               k["disabled"], k["address"], listed=k["listed"], enable_error=k["enable_error"],
                              pending=k.get("pending", False), gone=k.get("gone", False))
            pv = PredictedVerdict(**p["probelint"])
            comps.append(compare_verdicts(Sample(p["spec"], p["category"], p["function"], p["note"]), cpu, kv, pv))
        boots = [BootInfo([0] * b["probes"], b["elapsed"], b["completed"], False, cpu_model=b["cpu_model"],
                          vulnerabilities=b.get("vulnerabilities") or {}, cpu_flags=b.get("cpu_flags", []),
                          cpu_bugs=b.get("cpu_bugs", []), mitigations=b.get("mitigations", []),
                          modules=b.get("modules", {}), module_log=b.get("module_log", {}))
                 for b in data.get("boots", {}).get(cpu, [])]
        runs.append(CpuRun(cpu, comps, boots, data.get("profiles", {}).get(cpu, "")))
    return runs


def _disagreement_classes(comps: list[Comparison],
                          fields: tuple[str, ...]) -> list[tuple[str, str, str, int, Comparison]]:
    """(category, kernel verdict, probelint verdict + rules) classes of disagreement, with counts."""
    groups: dict[tuple[str, str, str], list[Comparison]] = defaultdict(list)
    for x in comps:
        if x.disagrees(fields):
            rules = ",".join(f["rule"] for f in x.predicted.findings) or "-"
            groups[(x.sample.category, verdict_text(x.kernel), f"{verdict_text(x.predicted)} ({rules})")].append(x)
    return sorted(((c, k, p, len(v), v[0]) for (c, k, p), v in groups.items()), key=lambda t: (-t[3], t[0]))


def _flags_note(run: CpuRun) -> str:
    mismatch = flags_mismatch(CpuProfile(run.profile), run.boots[0])
    return (f"; its CPU features differ from the guest's /proc/cpuinfo: {mismatch}." if mismatch
            else ", whose named CPU features equal the guest's /proc/cpuinfo flags and bugs.")


def render_validation(runs: list[CpuRun], meta: dict[str, Any]) -> str:
    """docs/validation.md: generated by ``probelint vmtest --write-validation``."""
    date = meta.get("date") or _dt.date.today().isoformat()
    lines = [
        "<!-- GENERATED by `probelint vmtest --write-validation` (scripts/vmtest_full.sh). Do not edit by hand:",
        "     re-run the script to regenerate. -->",
        "",
        "# Validation: probelint against a booted kernel",
        "",
        f"Generated {date} by `{meta.get('command', 'probelint vmtest')}`.",
        "",
        f"- kernel: `{meta.get('kernel_package')}` (probelint reads the `-dbg` vmlinux"
        + (f" and {', '.join(meta.get('modules', []))}.ko" if meta.get("modules") else "")
        + "; the kernel boots from its bootable package (`-unsigned`, or `linux-binary-` from 7.x) under QEMU"
        " TCG, `nokaslr`)",
        f"- CPU models: {', '.join(f'`{r.cpu}`' for r in runs)}",
        f"- probes: {meta.get('probe_count')} ({meta.get('source')})",
        "- a probe agrees on a field when probelint's verdict equals the kernel's: `registers` (the write",
        "  to kprobe_events succeeded), `errno` (same error name, or both none), `optimized`",
        "  (`[OPTIMIZED]` in kprobes/list after the optimizer settled), `ftrace` (`[FTRACE]`).",
        "- `optimized` is graded like the others, with probelint's --cpu-profile set for the CPU model.",
        "- probes the harness could not judge (guest crash, not run) are left out of the figures.",
        "",
    ]
    for run in runs:
        comps = run.comparisons
        table = agreement(comps)
        lines += [
            f"## CPU model `{run.cpu}`",
            "",
            f"{len(comps)} probes in {len(run.boots)} boot(s)"
            + (f"; guest CPU: {run.boots[0].cpu_model}" if run.boots and run.boots[0].cpu_model else "") + "."
            + (f" probelint `--cpu-profile {run.profile}`" if run.profile else "")
            + (_flags_note(run) if run.profile and run.boots and run.boots[0].cpu_flags else ""),
            "",
            *(f"{file} did not load in the guest ({why}): its probes are graded as the kernel held them, "
              "pending (probelint: KP413)." for file, why in load_failures(run.boots).items()),
            *([""] if load_failures(run.boots) else []),
            "| category | probes | registers | errno | optimized | ftrace | kernel outcomes |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for cat, e in table.items():
            cells = " | ".join(_pct(*e[f]) for f in FIELDS)
            outcomes = ", ".join(f"{k} {n}" for k, n in e["kernel_outcomes"].items())
            harness = f" ({e['harness']} not judged)" if e["harness"] else ""
            name = f"**{cat}**" if cat == "TOTAL" else f"`{cat}`"
            lines.append(f"| {name} | {e['probes']}{harness} | {cells} | {outcomes} |")
        lines += ["", "### Disagreements on registers / errno / ftrace", ""]
        classes = _disagreement_classes(comps, ("registers", "errno", "ftrace"))
        if not classes:
            lines.append("None.")
        else:
            lines += ["| category | kernel | probelint (rules) | count | example |", "|---|---|---|---:|---|"]
            for cat, k, p, n, ex in classes:
                lines.append(f"| `{cat}` | {k} | {p} | {n} | `{ex.sample.spec}` |")
        lines += ["", "### Disagreements on optimized only", ""]
        classes = _disagreement_classes([x for x in comps if x.disagrees() == ["optimized"]], ("optimized",))
        if not classes:
            lines.append("None.")
        else:
            lines += ["| category | kernel | probelint (rules) | count | example |", "|---|---|---|---:|---|"]
            for cat, k, p, n, ex in classes:
                lines.append(f"| `{cat}` | {k} | {p} | {n} | `{ex.sample.spec}` |")
        lines.append("")
    lines += [
        "## Categories",
        "",
        "| category | what is probed |",
        "|---|---|",
        *(f"| `{c}` | {d} |" for c, (_w, d) in CATEGORIES.items()),
        "",
    ]
    return "\n".join(lines)
