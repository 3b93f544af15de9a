"""KP411: a probe its tool skips on purpose, where the kernel would refuse it (or that the tool
never registers): what the tool will do, at info level, instead of an error.

* SystemTap ``POINT ?`` (optional) and ``POINT !`` (optional and sufficient): a point that does not
  resolve is dropped while translating (tapsets.cxx), and a registration failure of an optional
  probe is not even warned about (runtime/linux/kprobes.c `stapkp_register_probes`, `optional_p`);
  in ``A !, B`` the first point that resolves is taken and the later ones are not used;
* bcc ``if BPF.get_kprobe_functions(b"F"): attach F, else: attach G`` (or ``ksymname(F) != -1``),
  and try/except around an attach: the tool attaches a branch only where its guard holds (F is
  a kallsyms function bcc may trace), the except branch only where the try body failed; the
  probes of the branches it does not take are not used (or skipped, with the guard named);
* bpftrace ``config = { missing_probes = ignore }`` (or ``warn``): a probe that does not exist or
  cannot be attached is skipped instead of failing the program;
* libbpf: a program whose loader switches its autoload off is never loaded ("not used"); one the
  loader attaches itself is checked at the loader's target (said at info level), its guarded
  attaches (``if (kprobe_exists("F")) ... else ...``) alternatives as bcc's.

A required SystemTap point that stap resolved but the kernel refuses at registration is no error
either: stap warns ("registration error [man warning::pass5]", nothing for a module's probe) and
runs without it; the refusing finding says so, at warning level. A name stap cannot resolve fails
the script (pass 2: "semantic error: no match") and stays an error.

The probe keeps the kernel's verdict (refused, with its errno); the findings that decided it
become this one finding, which quotes them.
"""

from __future__ import annotations

from probelint.checks import Emit, ProbeResult, Rule, Stage
from probelint.findings import Severity
from probelint.readers.spec import ParseProblem


def _resolves(results: list[ProbeResult]) -> bool:
    """A branch's deciding points are placed: SystemTap's point resolves (pass 2) where it names
    something; bcc's guard holds where its function is found (not refused for any of
    `decided_by`), its try body where every attach succeeds."""
    decided_by = results[0].spec.origin.decided_by
    if not decided_by:
        return all(r.verdict.registers is True for r in results)
    return any(not isinstance(r.spec, ParseProblem) and not set(decided_by) & set(r.verdict.reasons)
               for r in results)


def _alternatives(results: list[ProbeResult], emit: Emit) -> tuple[set[int], set[int]]:
    """``A !, B`` and bcc's guarded branches: the branches after the first whose deciding points
    are placed are not used (their results, by id, first: their findings replaced by this rule's);
    the probes of a bcc branch taken are required whatever their guard (second)."""
    statements: dict[tuple[str, int], dict[object, list[ProbeResult]]] = {}
    for result in results:
        origin = result.spec.origin
        if origin.alternatives is not None:
            branches = statements.setdefault((result.spec.location.file, origin.alternatives), {})
            key = (result.spec.location, origin.branch) if origin.arm is None else origin.arm
            branches.setdefault(key, []).append(result)
    unused: set[int] = set()
    required: set[int] = set()
    for branches in statements.values():
        taken: ProbeResult | None = None
        for branch in branches.values():
            if taken is not None:
                for result in branch:
                    unused.add(id(result))
                    result.findings = []
                    result.verdict.unchecked("KP411")
                    emit(result, "KP411", _not_used(result, taken))
                continue
            deciding = [r for r in branch if r.spec.origin.sufficient]
            if deciding and _resolves(deciding):
                taken = deciding[0]
            if branch[0].spec.origin.arm is not None and (taken is not None or not deciding):
                required.update(id(r) for r in branch)  # the branch bcc runs (an else: once reached)
    return unused, required


def _not_used(result: ProbeResult, taken: ProbeResult) -> str:
    tool = result.spec.origin.tool
    if taken.spec.origin.arm is None:
        return f"not used: {tool} takes the point at {taken.spec.location}, the first of this `!` list that resolves"
    return f"not used: {tool} takes the branch at {taken.spec.location} instead ({taken.spec.origin.optional})"


# Refusals of a point the tool cannot even name: it fails before registering anything (stap's pass 2:
# "semantic error: no match"), whatever it does with a registration failure
_UNNAMED = frozenset({"KP001", "KP101"})


def _runs_without(result: ProbeResult) -> None:
    """A required probe the kernel refuses at registration, of a tool that runs on without it
    (SystemTap): its refusal is a warning that says so, not an error; the kernel's verdict is kept."""
    refusal = result.spec.origin.refusal
    if refusal is None or result.verdict.registers is not False or _UNNAMED & set(result.verdict.reasons):
        return
    result.findings = [f._replace(severity=Severity.WARNING, message=f"{f.message}; {refusal}")
                       if f.rule in result.verdict.reasons and f.severity > Severity.WARNING else f
                       for f in result.findings]


def _never_registered(result: ProbeResult, emit: Emit) -> None:
    """A probe its tool never registers (a libbpf program whose autoload the loader switches off)."""
    result.findings = []
    result.verdict.unchecked("KP411")
    emit(result, "KP411", f"not used: {result.spec.origin.unused}")


def check_set(results: list[ProbeResult], emit: Emit) -> None:
    for result in results:
        if result.spec.origin.unused is not None:
            _never_registered(result, emit)
    unused, required = _alternatives([r for r in results if r.spec.origin.unused is None], emit)
    unused |= {id(r) for r in results if r.spec.origin.unused is not None}
    settled = unused | required
    for result in results:
        origin = result.spec.origin
        if origin.optional is None and id(result) not in unused:
            _runs_without(result)
        if origin.optional is None or result.verdict.registers is True or id(result) in settled:
            continue
        deciding = [f for f in result.findings if f.rule in result.verdict.reasons and f.severity > Severity.INFO]
        if not deciding and result.fired.isdisjoint(result.verdict.reasons):
            continue
        result.findings = [f for f in result.findings if f not in deciding]
        why = "; ".join(f"{f.message} [{f.rule}]" for f in deciding) or ", ".join(result.verdict.reasons)
        outcome = ("nothing is placed" if isinstance(result.spec, ParseProblem) and "KP001" in result.verdict.reasons
                   else "the kernel would refuse it" if result.verdict.registers is False
                   else "probelint cannot check it")
        emit(result, "KP411", f"{origin.tool} skips this probe where it cannot be placed ({origin.optional}); "
                              f"{outcome}: {why}")
    _loader_notes(results, emit)


def _loader_notes(results: list[ProbeResult], emit: Emit) -> None:
    """What a tool took from elsewhere than the probe's text (libbpf's loader), once a probe (once
    a wildcard), where no other KP411 finding already speaks for it."""
    said: set[tuple[object, str]] = set()
    for result in results:
        note = result.spec.origin.loader
        key = (getattr(result.spec, "expanded_from", None) or result.spec.location, note or "")
        if note is None or key in said or any(f.rule == "KP411" for f in result.findings):
            continue
        said.add(key)
        emit(result, "KP411", f"{result.spec.origin.tool}: {note}")


RULE = Rule("KP411", "skipped-by-tool", Severity.INFO, Stage.SET, None,
            "systemtap runtime/linux/kprobes.c:stapkp_register_probes, bpftrace missing_probes",
            check_set=check_set)
