"""KP406: what a wildcard probe (bpftrace ``kprobe:vfs_*``, libbpf ``kprobe.multi/...``) expands to.

bpftrace and libbpf expand wildcards against /sys/kernel/tracing/available_filter_functions, the
functions with an ftrace site; probelint expands against the same set from the image
(`probelint.resolve.expand_globs`) and reports the count and the members that would fail.
"""

from __future__ import annotations

from collections.abc import Iterator

from probelint.checks import Hit, ProbeContext, Rule, Stage
from probelint.findings import Severity


def check(ctx: ProbeContext) -> Iterator[Hit]:
    return iter(())  # reported by probelint.readers.annotate_globs for the whole expansion


RULE = Rule("KP406", "wildcard", Severity.INFO, Stage.INFO, check, "kernel/trace/ftrace.c:available_filter_functions")
