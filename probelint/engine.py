"""resolve -> analyse -> check: run the rules over every probe of one set.

Registration rules run in the order `register_kprobe()` and the kprobe_events front-end test
things (kernel/trace/trace_kprobe.c `__trace_kprobe_create` -> `__register_trace_kprobe` ->
kernel/kprobes.c `register_kprobe`), and the first refusal decides the errno.
"""

from __future__ import annotations

import gc
import os
import pickle
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

from probelint.arch.x86.decode import ENDBR_INSN_SIZE, is_endbr
from probelint.checks import ProbeContext, ProbeResult, Rule, Stage, all_rules
from probelint.findings import Verdict
from probelint.gate import Gate
from probelint.image.kernel import Kernel
from probelint.progress import progress
from probelint.readers.spec import KPROBE_EVENTS, REGISTER_KPROBE, ParseProblem, ProbeSpec

if TYPE_CHECKING:
    from probelint.result_cache import ResultStore

__all__ = ["all_rules", "check_alone", "check_probes", "gate_for"]

_STAGE_ORDER = (Stage.INPUT, Stage.FRONTEND, Stage.RESOLVE, Stage.ADDRESS, Stage.INSN, Stage.OPTIMIZE, Stage.INFO,
                Stage.SET, Stage.AUDIT)
# The order in which the kernel tests a kprobe_events probe; rules not listed run after these,
# by stage and id. The first refusal decides the errno, as in the kernel.
KERNEL_ORDER = (
    "KP002",  # parse: traceprobe_split_symbol_offset (octal offsets)
    "KP113",  # __trace_kprobe_create: kprobe_on_func_entry for return probes
    "KP102",  #   ... number_of_same_symbols
    "KP402",  #   ... MOD:SYM of a module not given: not checked
    "KP413",  #   ... MOD:SYM of a module known not loaded: accepted, held pending
    "KP412",  #   ... a module without its vmlinux: what the kernel's image decides is unknown
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
    "KP414",  # kprobes_module_callback at MODULE_STATE_LIVE: a pending probe on init text is killed
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
# The kprobe_events / perf PMU front end's own tests (trace_kprobe.c), which a caller of
# register_kprobe() (SystemTap, a kernel module) never meets: with it a non-unique name is simply
# the first kallsyms match, and a notrace function is probed like any other.
FRONTEND_ONLY = frozenset({"KP102", "KP105"})
_DIRECT_ORDER = tuple(r for r in KERNEL_ORDER if r not in FRONTEND_ONLY)  # register_kprobe() alone
_REGISTRATION_STAGES = frozenset({Stage.FRONTEND, Stage.RESOLVE, Stage.ADDRESS, Stage.INSN})
_NEED_SYMBOL = frozenset({Stage.ADDRESS, Stage.INSN, Stage.OPTIMIZE, Stage.INFO})
_AFTER_REGISTRATION = frozenset({Stage.OPTIMIZE, Stage.INFO})
_STOP_AT_REFUSAL = _REGISTRATION_STAGES | {Stage.OPTIMIZE}
_NOT_FOR_FTRACE = frozenset({Stage.INSN, Stage.OPTIMIZE})
# ... but a probe killed once its module is live is gone, ftrace-based or not
_ALSO_FOR_FTRACE = frozenset({"KP414"})
# Information about what an optimized probe's jump meets at run time (a jump label or a .cold
# piece branching into it): only while the probe is optimized.
_ABOUT_THE_JUMP = frozenset({"KP404", "KP405"})


def gate_for(select: frozenset[str] | None = None, severity: dict | None = None) -> Gate:
    """The gate of a run that reports the rules `select` (None: all) with configured severities."""
    return Gate(all_rules(), select, severity)


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
        # a plain SYM is looked up when the probe is written (a MOD:SYM when MOD arrives)
        found = kernel.lookup_name(spec.symbol, spec.module, written=True)
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
            ctx.image.read(ctx.symbol.address, ENDBR_INSN_SIZE)) and kernel.does("ibt-entry-adjust"):
        ctx.address = ctx.symbol.address + ENDBR_INSN_SIZE
        ctx.on_func_entry = True


def kernel_order(kernel: Kernel, path: str = KPROBE_EVENTS) -> tuple[str, ...]:
    """KERNEL_ORDER for this kernel's version and registration path: from 6.12 kprobe_events
    validates the symbol (`validate_probe_symbol`, count 0 or > 1 -> -EINVAL) before the
    return-probe entry test; register_kprobe() alone never runs the front end's tests."""
    if path == REGISTER_KPROBE:
        return _DIRECT_ORDER
    if not kernel.does("validate-probe-symbol"):
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

    rules = sorted((r for r in all_rules().values() if r.check is not None), key=key)
    return [_Step(r, r.stage in _NEED_SYMBOL, r.stage in _AFTER_REGISTRATION, r.stage in _STOP_AT_REFUSAL,
                  r.stage in _NOT_FOR_FTRACE and r.id not in _ALSO_FOR_FTRACE, r.stage in _REGISTRATION_STAGES,
                  r.stage is Stage.OPTIMIZE, r.stage is Stage.INFO) for r in rules]


@cache
def _plan(order: tuple[str, ...], select: frozenset[str] | None, path: str = KPROBE_EVENTS) -> list[_Step]:
    """The steps to run: information rules nobody will read never change the verdict, so they go,
    and so do the front end's tests on a path that does not pass it."""
    skipped = FRONTEND_ONLY if path == REGISTER_KPROBE else frozenset()
    return [step for step in _rule_order(order) if (not step.info or select is None or step.rule.id in select)
            and step.rule.id not in skipped]


Plan = dict[str, list[_Step]]  # the steps of each registration path


def _plans(kernel: Kernel, select: frozenset[str] | None) -> Plan:
    return _plans_for(kernel_order(kernel), select)


@cache
def _plans_for(order: tuple[str, ...], select: frozenset[str] | None) -> Plan:
    """Read only: the probe map asks for it once per boundary."""
    return {KPROBE_EVENTS: _plan(order, select), REGISTER_KPROBE: _plan(_DIRECT_ORDER, select, REGISTER_KPROBE)}


def _rules_with(hook: str, *stages: Stage) -> list[Rule]:
    return [r for r in all_rules().values() if getattr(r, hook) is not None and r.stage in stages]


def check_probes(kernel: Kernel, parsed: list[ProbeSpec | ParseProblem], gate: Gate | None = None, *,
                 jobs: int = 1, observed: Callable[[list[ProbeResult]], None] | None = None,
                 stored: ResultStore | None = None) -> list[ProbeResult]:
    """Run every rule over every probe, then the set rules over the set; `gate` decides which
    findings are reported (not the verdict: the kernel applies all of its tests whatever the user
    asked to see). With `jobs` > 1 a large set is split between forked processes. `observed`
    sets what is known of some probes before the set rules run (--live: the registered ones).
    `stored`: the results of probes checked by an earlier run under the same key, taken from there
    (the set rules still run over the whole set), and the rest kept there."""
    gate = gate or gate_for()
    steps = _plans(kernel, gate.select)
    contexts = [ProbeContext(item, kernel) if isinstance(item, ProbeSpec) else item for item in parsed]
    probes = [k for k, c in enumerate(contexts) if isinstance(c, ProbeContext)]
    known = stored.restore({k: contexts[k] for k in probes}, kernel) if stored is not None else {}  # type: ignore[misc]
    checked = _check_forked(kernel, contexts, [k for k in probes if k not in known], steps, gate, jobs)
    if stored is not None:
        stored.keep(checked.values(), kernel)  # before the set rules add their findings to them
    checked.update(known)
    input_rules = _rules_with("check_input", Stage.INPUT)
    results = [checked[k] if isinstance(item, ProbeContext) else _check_input(item, input_rules, gate)
               for k, item in enumerate(contexts)]
    if observed is not None:
        observed(results)
    for rule in _rules_with("check_set", Stage.SET):
        rule.check_set(results, gate.emit)  # type: ignore[misc]
    for result in results:  # the set left it an int3 probe: the jump's hazards do not apply
        if not result.verdict.optimized:
            gate.retract(result, _ABOUT_THE_JUMP)
    for rule in _rules_with("check_set", Stage.AUDIT):
        rule.check_set(results, gate.emit)  # type: ignore[misc]
    return results


def _check_input(problem: ParseProblem, rules: list[Rule], gate: Gate) -> ProbeResult:
    """A line no reader could place: the input rules say why (KP001 refused, KP407 not checked)."""
    result = ProbeResult(problem, Verdict())
    for rule in rules:
        hit = rule.check_input(problem)  # type: ignore[misc]
        if hit is None:
            continue
        if rule.leaves_unchecked:
            result.verdict.unchecked(rule.id)
        elif rule.errno is not None:
            result.verdict.refuse(rule.errno, rule.id)
        gate.emit(result, rule.id, hit.text(), hit.note_lines(), hit.fix)
    return result


_PROBES_PER_JOB = 250  # below this a forked worker costs more than it saves (~5 ms of fork and pickling)


def _check_forked(kernel: Kernel, contexts: list[ProbeContext | ParseProblem], probes: list[int],
                  steps: Plan, gate: Gate, jobs: int) -> dict[int, ProbeResult]:
    """`_check_one` for each of `probes` (indexes into `contexts`), in `jobs` processes at most.

    Probes are independent until the set check, so contiguous runs of them (neighbouring probes
    share functions) go to forked children, which inherit the loaded kernel, resolve and check
    their run, and send back plain data (`_Sent`). A child that fails leaves its run to the
    parent. Forking is left to the command line (`jobs`): a library caller may have threads."""
    parts = max(1, min(jobs, len(probes) // _PROBES_PER_JOB)) if hasattr(os, "fork") else 1
    size = max(1, -(-len(probes) // parts))
    runs = [probes[k : k + size] for k in range(0, len(probes), size)] or [[]]
    if len(runs) > 1:
        gc.freeze()  # the collector then leaves the inherited objects alone: fewer copy-on-write pages
    children = [(run, _fork_checker(kernel, contexts, run, steps, gate)) for run in runs[1:]]
    gc.unfreeze()
    out = {k: _check_one(ctx, steps, gate)
           for k, ctx in progress(_prepared(kernel, contexts, runs[0]), len(runs[0]), "checking probes")}
    for run, child in children:
        sent = _collect(*child) if child is not None else None
        if sent is None:
            out.update((k, _check_one(ctx, steps, gate)) for k, ctx in _prepared(kernel, contexts, run))
            continue
        for k in run:
            ctx = contexts[k]
            assert isinstance(ctx, ProbeContext)
            out[k] = sent[k].restore(ctx, kernel)
    return out


class _Sent(NamedTuple):
    """What a forked checker sends back of one probe: where it resolved (images by index), its
    verdict, findings and fired rules, and where an optimized probe's window ends."""

    image: int | None
    symbol: object
    address: int | None
    named: object
    named_image: int | None
    on_func_entry: bool
    verdict: tuple[bool | None, str | None, bool, bool, list[str]]
    findings: list[object]
    fired: set[str]
    window_end: int | None

    @classmethod
    def pack(cls, result: ProbeResult, index: dict[int, int]) -> _Sent:
        ctx, v = result.context, result.verdict
        assert ctx is not None
        return cls(index.get(id(ctx.image)), ctx.symbol, ctx.address, ctx.named, index.get(id(ctx.named_image)),
                   ctx.on_func_entry, (v.registers, v.errno, v.optimized, v.ftrace, v.reasons), result.findings,
                   result.fired, ctx.window_end() if v.optimized else None)

    def restore(self, ctx: ProbeContext, kernel: Kernel) -> ProbeResult:
        images = kernel.images
        ctx.image = images[self.image] if self.image is not None else None
        ctx.named_image = images[self.named_image] if self.named_image is not None else None
        ctx.symbol, ctx.address, ctx.named, ctx.on_func_entry = self.symbol, self.address, self.named, \
            self.on_func_entry  # type: ignore[assignment]
        v = ctx.verdict
        v.registers, v.errno, v.optimized, v.ftrace, v.reasons = self.verdict
        ctx._window_end = self.window_end
        result = ProbeResult(ctx.spec, v, self.findings, ctx)  # type: ignore[arg-type]
        result.fired = self.fired
        return result


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


def _fork_checker(kernel: Kernel, contexts: list[ProbeContext | ParseProblem], run: list[int], steps: Plan,
                  gate: Gate) -> tuple[int, int] | None:
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
        index = {id(image): i for i, image in enumerate(kernel.images)}
        sent = {k: _Sent.pack(_check_one(ctx, steps, gate), index) for k, ctx in _prepared(kernel, contexts, run)}
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(pickle.dumps(sent, pickle.HIGHEST_PROTOCOL))
        for image in kernel.images:
            image.save_facts()  # what this child decoded makes the next run warm too
    finally:
        os._exit(0)


def _collect(pid: int, read_end: int) -> dict[int, _Sent] | None:
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
    gate = gate_for(None if findings else frozenset())
    return _check_one(_resolved(spec, kernel), _plans(kernel, gate.select), gate)


def _check_one(ctx: ProbeContext, plan: Plan, gate: Gate) -> ProbeResult:
    result = ProbeResult(ctx.spec, ctx.verdict, context=ctx)
    steps = plan[ctx.spec.origin.path]
    verdict = ctx.verdict
    resolved = ctx.symbol is not None
    on_ftrace_site = ctx.on_ftrace_site
    optimize_refused = False
    ftrace_decided = False
    optimization_unknown = False  # a rule left only the optimization unchecked (KP412)
    wanted, emit, fired = gate.wanted, gate.emit, result.fired
    # Unpacked rather than read by attribute: this loop runs ~40 times per probe, millions of
    # times for a probe map.
    for rule, needs_symbol, after_registration, stops_at_refusal, not_for_ftrace, registration, optimize, _ in steps:
        if needs_symbol and not resolved:
            continue  # nothing to look at: resolution failed
        if after_registration and not ftrace_decided:
            ftrace_decided = True  # registration is over: an exact fentry site makes it ftrace-based
            verdict.ftrace = verdict.registers is True and on_ftrace_site
            verdict.optimized = verdict.registers is True and not verdict.ftrace
            if optimization_unknown and verdict.optimized:
                verdict.optimized = None  # registers as an int3 probe; the jump is not checked
        if stops_at_refusal and not verdict.registers:
            continue  # the kernel stopped at the first refusal (or the probe cannot be checked)
        if on_ftrace_site and not_for_ftrace:
            continue  # ftrace-based: no instruction checks, never optimized
        if (optimize_refused or optimization_unknown) and optimize:
            # the first failed precondition leaves an int3 probe: report only that one; unknown:
            # the bytes the optimizer would read are not known, so nothing it decides is said
            continue
        for hit in rule.check(ctx):  # type: ignore[misc]
            errno = hit.errno or rule.errno
            if rule.leaves_unchecked and hit.optimization_only:
                optimization_unknown = True
                verdict.reasons.append(rule.id)
            elif rule.leaves_unchecked:
                verdict.unchecked(rule.id)
            elif errno is not None and registration and verdict.registers:
                verdict.refuse(errno, rule.id)
            elif optimize:
                optimize_refused = True
                verdict.optimized = False
                verdict.reasons.append(rule.id)
            if wanted(rule.id):
                emit(result, rule.id, hit.text(), hit.note_lines(), hit.fix)
            else:
                fired.add(rule.id)
    return result
