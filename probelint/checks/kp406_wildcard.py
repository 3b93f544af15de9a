"""KP406: what a wildcard probe (bpftrace ``kprobe:vfs_*``, libbpf ``kprobe.multi/...``) expands to.

bpftrace and libbpf expand wildcards against /sys/kernel/tracing/available_filter_functions, the
functions with an ftrace site; probelint expands against the same set from the image
(`probelint.resolve.expand_globs`), and reports on the first match of each wildcard how many
functions matched and which of them the kernel would refuse.
"""

from __future__ import annotations

from probelint.checks import Emit, ProbeResult, Rule, Stage
from probelint.findings import Severity
from probelint.readers.spec import ProbeSpec


def expansions(results: list[ProbeResult]) -> list[tuple[ProbeSpec, list[ProbeResult]]]:
    """Each wildcard of the set with the results of its checked matches, in order."""
    groups: dict[int, tuple[ProbeSpec, list[ProbeResult]]] = {}
    for result in results:
        glob = result.spec.expanded_from if isinstance(result.spec, ProbeSpec) else None
        if glob is not None:
            groups.setdefault(id(glob), (glob, []))[1].append(result)
    return list(groups.values())


def check_set(results: list[ProbeResult], emit: Emit) -> None:
    for glob, members in expansions(results):
        count = max(glob.matches, len(members))
        failing = [r.spec.symbol or "" for r in members if r.verdict.registers is False]
        message = f"{glob.text} matches {count} traceable function{'s' if count != 1 else ''}"
        checked = f" of the {len(members)} checked" if count > len(members) else ""  # the rest: KP410
        message += (f"; {len(failing)}{checked} would fail: {', '.join(failing[:8])}" if failing
                    else f"; all{checked} register")
        emit(members[0], "KP406", message, location=glob.location)


RULE = Rule("KP406", "wildcard", Severity.INFO, Stage.SET, None, "kernel/trace/ftrace.c:available_filter_functions",
            check_set=check_set)
