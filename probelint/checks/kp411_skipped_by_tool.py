"""KP411: a probe its tool skips on purpose, where the kernel would refuse it (or that the tool
never registers): what the tool will do, at info level, instead of an error.

* SystemTap ``POINT ?`` (optional) and ``POINT !`` (optional and sufficient): a point that does not
  resolve is dropped while translating (tapsets.cxx), and a registration failure of an optional
  probe is not even warned about (runtime/linux/kprobes.c `stapkp_register_probes`, `optional_p`);
  in ``A !, B`` the first point that resolves is taken and the later ones are not used;
* bpftrace ``config = { missing_probes = ignore }`` (or ``warn``): a probe that does not exist or
  cannot be attached is skipped instead of failing the program.

The probe keeps the kernel's verdict (refused, with its errno); the findings that decided it
become this one finding, which quotes them.
"""

from __future__ import annotations

from probelint.checks import Emit, ProbeResult, Rule, Stage
from probelint.findings import Location, Severity
from probelint.readers.spec import ParseProblem


def _resolves(results: list[ProbeResult]) -> bool:
    """A SystemTap point resolves (pass 2) where it names something: not a parse problem, not an
    unknown symbol."""
    return any(not isinstance(r.spec, ParseProblem) and "KP101" not in r.verdict.reasons for r in results)


def _alternatives(results: list[ProbeResult], emit: Emit) -> set[int]:
    """``A !, B``: the points after the first sufficient one that resolves are not used (their
    results are returned, by id, with their findings replaced by this rule's)."""
    statements: dict[tuple[str, int], dict[Location, list[ProbeResult]]] = {}
    for result in results:
        origin = result.spec.origin
        if origin.alternatives is not None:
            points = statements.setdefault((result.spec.location.file, origin.alternatives), {})
            points.setdefault(result.spec.location, []).append(result)
    unused: set[int] = set()
    for points in statements.values():
        taken: Location | None = None
        for location, point in points.items():
            if taken is not None:
                for result in point:
                    unused.add(id(result))
                    result.findings = []
                    result.verdict.unchecked("KP411")
                    emit(result, "KP411", f"not used: {result.spec.origin.tool} takes the point at {taken}, the "
                                          f"first of this `!` list that resolves")
            elif point[0].spec.origin.sufficient and _resolves(point):
                taken = location
    return unused


def check_set(results: list[ProbeResult], emit: Emit) -> None:
    unused = _alternatives(results, emit)
    for result in results:
        origin = result.spec.origin
        if origin.optional is None or result.verdict.registers is True or id(result) in unused:
            continue
        deciding = [f for f in result.findings if f.rule in result.verdict.reasons and f.severity > Severity.INFO]
        if not deciding and result.fired.isdisjoint(result.verdict.reasons):
            continue
        result.findings = [f for f in result.findings if f not in deciding]
        why = "; ".join(f"{f.message} [{f.rule}]" for f in deciding) or ", ".join(result.verdict.reasons)
        outcome = "the kernel would refuse it" if result.verdict.registers is False else "probelint cannot check it"
        emit(result, "KP411", f"{origin.tool} skips this probe where it cannot be placed ({origin.optional}); "
                              f"{outcome}: {why}")


RULE = Rule("KP411", "skipped-by-tool", Severity.INFO, Stage.SET, None,
            "systemtap runtime/linux/kprobes.c:stapkp_register_probes, bpftrace missing_probes",
            check_set=check_set)
