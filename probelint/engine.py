"""resolve -> analyse -> check: run the rules over every probe of one set.

Registration rules run in the order `register_kprobe()` and the kprobe_events front-end test
things (kernel/trace/trace_kprobe.c `__trace_kprobe_create` -> `__register_trace_kprobe` ->
kernel/kprobes.c `register_kprobe`), and the first refusal decides the errno.
"""

from __future__ import annotations

import gc
import importlib
import os
import pickle
from functools import cache
from typing import NamedTuple

from probelint import checks, interference
from probelint.arch.x86 import ENDBR_INSN_SIZE, is_endbr
from probelint.checks import ProbeContext, Rule, Stage
from probelint.findings import Finding, Fix, Verdict
from probelint.image.kernel import Kernel
from probelint.progress import progress
from probelint.readers.spec import ParseProblem, ProbeSpec

__all__ = ["ProbeResult", "all_rules", "check_alone", "check_probes"]

_STAGE_ORDER = (Stage.INPUT, Stage.FRONTEND, Stage.RESOLVE, Stage.ADDRESS, Stage.INSN, Stage.OPTIMIZE, Stage.INFO)
# The order in which the kernel tests a kprobe_events probe; rules not listed run after these,
# by stage and id. The first refusal decides the errno, as in the kernel.
KERNEL_ORDER = (
    "KP002",  # parse: traceprobe_split_symbol_offset (octal offsets)
    "KP113",  # __trace_kprobe_create: kprobe_on_func_entry for return probes
    "KP102",  #   ... number_of_same_symbols
    "KP402",  #   ... MOD:SYM of a module not loaded: deferred
    "KP105",  # __register_trace_kprobe: within_notrace_func
    "KP101",  # register_k(ret)probe -> _kprobe_addr
    "KP115",  # register_kretprobe: kretprobe_blacklist
    "KP117",  # check_kprobe_address_safe: check_ftrace_location without KPROBES_ON_FTRACE
    "KP103",  #   ... core_kernel_text / __module_text_address
    "KP106",  #   ... within_kprobe_blacklist
    "KP107",  #   ... jump_label_text_reserved
    "KP108",  #   ... static_call_text_reserved
    "KP109",  #   ... find_bug
    "KP114",  #   ... is_cfi_preamble_symbol
    "KP104",  # arch_prepare_kprobe: can_probe
    "KP116",  #   ... can_probe: INT/UD at the address (>= 6.9)
    "KP110",  #   ... __copy_instruction
    "KP111",  #   ... prepare_emulation
    "KP112",  #   ... prepare_singlestep
    "KP209",  # try_to_optimize_kprobe: CONFIG_OPTPROBES
    "KP210",  #   ... optimize_kprobe: disabled probes are not optimized
    "KP202",  #   ... can_optimize: room for the jump
    "KP203",  #   ... whole-function scan: exception table
    "KP204",  #   ... decodable
    "KP205",  #   ... indirect jumps
    "KP206",  #   ... jumps into the window
    "KP207",  # copy_optimized_instructions: copy + can_boost
    "KP208",  #   ... reserved text (-EBUSY)
)
_REGISTRATION_STAGES = frozenset({Stage.FRONTEND, Stage.RESOLVE, Stage.ADDRESS, Stage.INSN})
_NEED_SYMBOL = frozenset({Stage.ADDRESS, Stage.INSN, Stage.OPTIMIZE, Stage.INFO})
_AFTER_REGISTRATION = frozenset({Stage.OPTIMIZE, Stage.INFO})
_STOP_AT_REFUSAL = _REGISTRATION_STAGES | {Stage.OPTIMIZE}
_NOT_FOR_FTRACE = frozenset({Stage.INSN, Stage.OPTIMIZE})
_FROM_PARSING = ("KP001", "KP407")  # reported by `check_probes` from the parse result
# Information about what an optimized probe's jump meets at run time (a jump label or a .cold
# piece branching into it): only while the probe is optimized.
_ABOUT_THE_JUMP = frozenset({"KP404", "KP405"})


@cache
def all_rules() -> dict[str, Rule]:
    """Every rule, by id, discovered from the modules of `probelint.checks`."""
    rules = {}
    # the package's modules, listed directly: pkgutil.iter_modules imports `inspect` (~6 ms)
    names = sorted({entry.name[:-3] for path in checks.__path__ for entry in os.scandir(path)
                    if entry.name.endswith(".py") and not entry.name.startswith("_")})
    for name in names:
        module = importlib.import_module(f"{checks.__name__}.{name}")
        rule = getattr(module, "RULE", None)
        if isinstance(rule, Rule):
            rules[rule.id] = rule
    return dict(sorted(rules.items()))


class ProbeResult:
    """One input line's outcome: the spec (or the parse problem), verdict and findings."""

    __slots__ = ("context", "findings", "spec", "verdict")

    def __init__(self, spec: ProbeSpec | ParseProblem, verdict: Verdict, findings: list[Finding] | None = None,
                 context: ProbeContext | None = None) -> None:
        self.spec = spec
        self.verdict = verdict
        self.findings: list[Finding] = findings if findings is not None else []
        self.context = context

    def __repr__(self) -> str:
        return f"ProbeResult({self.spec.text!r}, {self.verdict!r}, {len(self.findings)} findings)"


def _resolved(spec: ProbeSpec, kernel: Kernel) -> ProbeContext:
    ctx = ProbeContext(spec, kernel)
    _resolve(ctx)
    return ctx


def _resolve(ctx: ProbeContext) -> None:
    """_kprobe_addr(): name -> address, re-based onto the symbol containing it, then
    arch_adjust_kprobe_addr() (arch/x86/kernel/kprobes/core.c): with IBT, offsets 0 and 4 of a
    function starting with ENDBR (or its seal poison) both mean the entry, probed at +4."""
    spec, kernel = ctx.spec, ctx.kernel
    if spec.symbol is not None:
        found = kernel.lookup_name(spec.symbol, spec.module)
        if found is None:
            return
        ctx.named_image, ctx.named = found
        ctx.address = ctx.named.address + spec.offset
    else:
        ctx.address = spec.address
    assert ctx.address is not None
    containing = kernel.lookup(ctx.address)
    if containing is None:
        return
    ctx.image, ctx.symbol = containing
    offset = ctx.address - ctx.symbol.address
    ctx.on_func_entry = offset == 0
    if offset in (0, ENDBR_INSN_SIZE) and kernel.enabled("X86_KERNEL_IBT") and is_endbr(
            ctx.image.read(ctx.symbol.address, ENDBR_INSN_SIZE)):
        ctx.address = ctx.symbol.address + ENDBR_INSN_SIZE
        ctx.on_func_entry = True


def kernel_order(kernel: Kernel) -> tuple[str, ...]:
    """KERNEL_ORDER for this kernel's version: from 6.12 kprobe_events validates the symbol
    (`validate_probe_symbol`, count 0 or > 1 -> -EINVAL) before the return-probe entry test."""
    if not kernel.at_least(6, 12):
        return KERNEL_ORDER
    early = ("KP102", "KP101")
    return early + tuple(r for r in KERNEL_ORDER if r not in early)


class _Step(NamedTuple):
    """A rule with its stage's properties worked out once (the loop runs per probe)."""

    rule: Rule
    needs_symbol: bool
    after_registration: bool
    stops_at_refusal: bool
    not_for_ftrace: bool
    registration: bool
    optimize: bool
    info: bool


@cache
def _rule_order(order: tuple[str, ...] = KERNEL_ORDER) -> list[_Step]:
    def key(rule: Rule) -> tuple[int, int, str]:
        listed = order.index(rule.id) if rule.id in order else len(order)
        return (listed, _STAGE_ORDER.index(rule.stage), rule.id)

    rules = sorted((r for r in all_rules().values() if r.id not in _FROM_PARSING), key=key)
    return [_Step(r, r.stage in _NEED_SYMBOL, r.stage in _AFTER_REGISTRATION, r.stage in _STOP_AT_REFUSAL,
                  r.stage in _NOT_FOR_FTRACE, r.stage in _REGISTRATION_STAGES, r.stage is Stage.OPTIMIZE,
                  r.stage is Stage.INFO) for r in rules]


@cache
def _plan(order: tuple[str, ...], select: frozenset[str] | None) -> list[_Step]:
    """The steps to run: information rules nobody will read never change the verdict, so they go."""
    return [step for step in _rule_order(order) if not step.info or _wanted(step.rule.id, select)]


def check_probes(kernel: Kernel, parsed: list[ProbeSpec | ParseProblem],
                 select: frozenset[str] | None = None, *, jobs: int = 1) -> list[ProbeResult]:
    """Run every rule over every probe; `select` limits which findings are reported (not the
    verdict: the kernel applies all of its tests whatever the user asked to see). With `jobs` > 1
    a large set is split between forked processes (the command line's default)."""
    rules = _plan(kernel_order(kernel), select)
    contexts = [ProbeContext(item, kernel) if isinstance(item, ProbeSpec) else item for item in parsed]
    probes = [k for k, c in enumerate(contexts) if isinstance(c, ProbeContext)]
    checked = _check_forked(kernel, contexts, probes, rules, select, jobs)
    results = []
    for k, item in enumerate(contexts):
        if isinstance(item, ParseProblem):
            verdict = Verdict()
            rule = "KP407" if item.unsupported else "KP001"
            if not item.unsupported:
                verdict.refuse("EINVAL", rule)
            finding = Finding(rule, all_rules()[rule].severity, f"{item.message}: {item.text!r}", item.location)
            results.append(ProbeResult(item, verdict, [finding] if _wanted(rule, select) else []))
        else:
            results.append(checked[k])
    interference.check_set(results, select)
    for result in results:  # the set left it an int3 probe: the jump's hazards do not apply
        if not result.verdict.optimized and result.findings:
            result.findings = [f for f in result.findings if f.rule not in _ABOUT_THE_JUMP]
    _duplicates(results, select)
    for result in results:
        _apply_suppressions(result, select)
    return results


_PROBES_PER_JOB = 250  # below this a forked worker costs more than it saves (~5 ms of fork and pickling)


def _check_forked(kernel: Kernel, contexts: list[ProbeContext | ParseProblem], probes: list[int],
                  steps: list[_Step], select: frozenset[str] | None, jobs: int) -> dict[int, ProbeResult]:
    """`_check_one` for each of `probes` (indexes into `contexts`), in `jobs` processes at most.

    Probes are independent until the set check, so contiguous runs of them (neighbouring probes
    share functions) go to forked children, which inherit the loaded kernel, resolve and check
    their run, and send back plain data: where each probe resolved, its verdict and findings, and
    where an optimized probe's window ends. A child that
    fails leaves its run to the parent. Forking is left to the command line (`jobs`): a library
    caller may have threads."""
    parts = max(1, min(jobs, len(probes) // _PROBES_PER_JOB)) if hasattr(os, "fork") else 1
    size = max(1, -(-len(probes) // parts))
    runs = [probes[k : k + size] for k in range(0, len(probes), size)] or [[]]
    if len(runs) > 1:
        gc.freeze()  # the collector then leaves the inherited objects alone: fewer copy-on-write pages
    children = [(run, _fork_checker(kernel, contexts, run, steps, select)) for run in runs[1:]]
    gc.unfreeze()
    out = {k: _check_one(ctx, steps, select)
           for k, ctx in progress(_prepared(kernel, contexts, runs[0]), len(runs[0]), "checking probes")}
    images = kernel.images
    for run, child in children:
        sent = _collect(*child) if child is not None else None
        if sent is None:
            out.update((k, _check_one(ctx, steps, select)) for k, ctx in _prepared(kernel, contexts, run))
            continue
        for k in run:
            ctx = contexts[k]
            assert isinstance(ctx, ProbeContext)
            (image, ctx.symbol, ctx.address, ctx.named, named_image, ctx.on_func_entry, ctx.verdict.registers,
             ctx.verdict.errno, ctx.verdict.optimized, ctx.verdict.ftrace, ctx.verdict.reasons, findings,
             ctx._window_end) = sent[k]
            ctx.image = images[image] if image is not None else None
            ctx.named_image = images[named_image] if named_image is not None else None
            out[k] = ProbeResult(ctx.spec, ctx.verdict, findings, ctx)
    return out


def _prepared(kernel: Kernel, contexts: list[ProbeContext | ParseProblem],
              run: list[int]) -> list[tuple[int, ProbeContext]]:
    """`run`'s contexts resolved, with the facts of the functions the rules will read fetched in
    one query per image."""
    prepared = []
    for k in run:
        ctx = contexts[k]
        assert isinstance(ctx, ProbeContext)
        _resolve(ctx)
        prepared.append((k, ctx))
    for image in kernel.images:
        image.prefetch_functions([c.symbol for _, c in prepared if c.image is image and c.symbol is not None])
    return prepared


def _fork_checker(kernel: Kernel, contexts: list[ProbeContext | ParseProblem], run: list[int], steps: list[_Step],
                  select: frozenset[str] | None) -> tuple[int, int] | None:
    """(pid, read end of a pipe) of a child checking `run`, or None if it cannot be started."""
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid:
        os.close(write_end)
        return pid, read_end
    try:  # the child: never returns into the caller's stack
        os.close(read_end)
        sent = {}
        index = {id(image): i for i, image in enumerate(kernel.images)}
        for k, ctx in _prepared(kernel, contexts, run):
            result = _check_one(ctx, steps, select)
            v = result.verdict
            sent[k] = (index.get(id(ctx.image)), ctx.symbol, ctx.address, ctx.named, index.get(id(ctx.named_image)),
                       ctx.on_func_entry, v.registers, v.errno, v.optimized, v.ftrace, v.reasons, result.findings,
                       ctx.window_end() if v.optimized else None)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(pickle.dumps(sent, pickle.HIGHEST_PROTOCOL))
        for image in kernel.images:
            image.save_facts()  # what this child decoded makes the next run warm too
    finally:
        os._exit(0)


def _collect(pid: int, read_end: int) -> dict[int, tuple[object, ...]] | None:
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    try:
        return pickle.loads(data) if data else None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        return None


def check_alone(kernel: Kernel, spec: ProbeSpec, *, findings: bool = False) -> ProbeResult:
    """One probe as the only probe of its set (the probe map): its verdict, and its findings only
    when asked for (they cost more than the verdict)."""
    select = None if findings else frozenset[str]()
    return _check_one(_resolved(spec, kernel), _plan(kernel_order(kernel), select), select)


def _duplicates(results: list[ProbeResult], select: frozenset[str] | None) -> None:
    """KP409: a probe the set already has (same image, address and kind): the kernel aggregates it.

    Only a duplicate within one file offers a fix, and an unsafe one (removing it stops its
    handler running for that probe): the files of one run are often independent programs, and a
    probe must not leave one file because another has it."""
    if not _wanted("KP409", select):
        return
    first_in_set: dict[tuple[int, int, bool], ProbeResult] = {}
    first_in_file: dict[tuple[int, int, bool, str], ProbeResult] = {}
    for result in results:
        ctx = result.context
        if ctx is None or ctx.image is None or ctx.address is None or not result.verdict.registers:
            continue
        key = (id(ctx.image), ctx.address, ctx.spec.is_return)
        first = first_in_set.setdefault(key, result)
        same_file = first_in_file.setdefault((*key, ctx.spec.location.file), result)
        if first is result:
            continue
        earlier = same_file if same_file is not result else first
        fix = Fix("", False, "remove the duplicate probe", remove=True) if same_file is not result else None
        result.findings.append(Finding(
            "KP409", all_rules()["KP409"].severity,
            f"{ctx.where()} is already probed at {earlier.spec.location}: the kernel aggregates both on one "
            f"kprobe", ctx.spec.location, fix=fix))


def _apply_suppressions(result: ProbeResult, select: frozenset[str] | None) -> None:
    """Drop findings the probe line suppresses; report suppressions that matched nothing (KP403).
    Suppression hides a finding, never changes the kernel verdict."""
    spec = result.spec
    if isinstance(spec, ParseProblem) or not spec.suppressed:
        return
    fired = {f.rule for f in result.findings}
    result.findings = [f for f in result.findings if f.rule not in spec.suppressed]
    unused = sorted(spec.suppressed - fired)
    if unused and _wanted("KP403", select):
        known = all_rules()
        what = ", ".join(f"{r} (no such rule)" if r not in known else r for r in unused)
        result.findings.append(Finding("KP403", known["KP403"].severity,
                                       f"unused suppression: {what} did not fire on this probe", spec.location))


def _wanted(rule_id: str, select: frozenset[str] | None) -> bool:
    return select is None or rule_id in select


def _check_one(ctx: ProbeContext, steps: list[_Step], select: frozenset[str] | None) -> ProbeResult:
    result = ProbeResult(ctx.spec, ctx.verdict, context=ctx)
    verdict = ctx.verdict
    resolved = ctx.symbol is not None
    on_ftrace_site = ctx.on_ftrace_site
    optimize_refused = False
    ftrace_decided = False
    # Unpacked rather than read by attribute: this loop runs ~40 times per probe, millions of
    # times for a probe map.
    for rule, needs_symbol, after_registration, stops_at_refusal, not_for_ftrace, registration, optimize, _ in steps:
        if needs_symbol and not resolved:
            continue  # nothing to look at: resolution failed
        if after_registration and not ftrace_decided:
            ftrace_decided = True  # registration is over: an exact fentry site makes it ftrace-based
            verdict.ftrace = verdict.registers and on_ftrace_site
            verdict.optimized = verdict.registers and not verdict.ftrace
        if stops_at_refusal and not verdict.registers:
            continue  # the kernel stopped at the first refusal
        if on_ftrace_site and not_for_ftrace:
            continue  # ftrace-based: no instruction checks, never optimized
        if optimize_refused and optimize:
            continue  # the first failed precondition leaves an int3 probe; report only that one
        for hit in rule.check(ctx):
            errno = hit.errno or rule.errno
            if errno is not None and registration and verdict.registers:
                verdict.refuse(errno, rule.id)
            elif optimize:
                optimize_refused = True
                verdict.optimized = False
                verdict.reasons.append(rule.id)
            if _wanted(rule.id, select):
                result.findings.append(Finding(rule.id, rule.severity, hit.text(), ctx.spec.location, hit.note_lines(),
                                               hit.fix))
    return result


