"""Resolution of what readers cannot place alone: wildcards against the kernel's traceable
functions, and source lines / SystemTap functions through the vmlinux's DWARF (perf's model)."""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING

from probelint import readers
from probelint.readers import Parsed, SourceLineProbe
from probelint.readers.spec import ParseProblem, ProbeSpec

if TYPE_CHECKING:
    from probelint.image.cache import IndexCache
    from probelint.image.kernel import Kernel

__all__ = ["MAX_WILDCARD", "expand_globs", "resolve_source_lines"]

# Matches of one wildcard that are checked, the first by name: probelint's own bound on the work
# (a 52-byte ``kprobe.multi/*`` is every traceable function, ~35k). The tools set none that binds:
# the kernel takes up to MAX_KPROBE_MULTI_CNT (1 << 20) functions in one kprobe.multi link, and
# bpftrace refuses more than BPFTRACE_MAX_PROBES (default 512) only where it attaches one kprobe each.
MAX_WILDCARD = 4096


def expand_globs(kernel: Kernel, parsed: list[Parsed]) -> list[Parsed]:
    """Replace each wildcard probe by one probe per matching traceable function (what bpftrace and
    kprobe.multi attach to: available_filter_functions), each knowing the wildcard it came from.
    Each wildcard gives at most MAX_WILDCARD of them, and the run no more than MAX_PROBES probes
    besides one per wildcard (KP410 reports the cut)."""
    out: list[Parsed] = []
    names: list[tuple[str, str | None]] | None = None
    bcc_names: list[tuple[str, str | None]] | None = None
    spare = readers.MAX_PROBES - len(parsed)
    for item in parsed:
        if not isinstance(item, ProbeSpec) or not item.is_glob:
            out.append(item)
            continue
        if names is None:
            names = _traceable_names(kernel)
        pattern = item.symbol or ""
        regex = None
        if item.regex:
            regex, why = _event_re(pattern)
            if regex is None:
                out.append(ParseProblem(item.text, item.location, why, origin=item.origin))
                continue
            if bcc_names is None:
                bcc_names = _bcc_kprobe_functions(kernel, names)
        matches = sorted({n for n, mod in (bcc_names if regex and bcc_names is not None else names)
                          if item.module in (None, mod)
                          and (regex.fullmatch(n) if regex else fnmatch.fnmatchcase(n, pattern))})
        if not matches:
            out.append(_matches_nothing(item, pattern))
            continue
        checked = max(1, min(len(matches), MAX_WILDCARD, spare + 1))  # each wildcard keeps one, for its findings
        spare -= checked - 1
        glob = item._replace(matches=len(matches))
        out += [item._replace(symbol=name, text=f"{item.text} -> {name}", expanded_from=glob, regex=False)
                for name in matches[:checked]]
    return out


def _matches_nothing(item: ProbeSpec, pattern: str) -> ParseProblem:
    """A wildcard or event_re that matches no traceable function, with what its tool does then."""
    origin, what = item.origin, "event_re" if item.regex else "wildcard"
    message = f"{what} {pattern} matches no traceable function"
    if item.regex:  # bcc's attach_kprobe raises when no match attaches, none included
        message += ": bcc raises (\"Failed to attach BPF program\")"
        origin = origin._replace(optional=None)
    elif origin.tool == "bpftrace" and origin.siblings:
        # every bpftrace drops an attach point whose wildcard matches nothing (0.17 bpftrace.cpp
        # add_probe; >= 0.24 ap_probe_expansion.cpp): the probe keeps its other attach points
        origin = origin._replace(optional=origin.optional or f"bpftrace drops a wildcard that matches nothing; its "
                                                             f"probe keeps its {origin.siblings} other attach point"
                                                             f"{'s' if origin.siblings > 1 else ''}")
    elif origin.tool == "bpftrace":
        message += (": bpftrace >= 0.24 refuses the program (\"Probe has no valid attach points\", unless config "
                    "missing_probes = warn or ignore); 0.17 to 0.23 drop it and fail only when no probe is left "
                    "in the program (\"No probes to attach\")")
    return ParseProblem(item.text, item.location, message, origin=origin)


# A quantified group that itself holds a quantifier, as in (a+)+ or (\w*x)*: Python's matcher
# may backtrack exponentially on such a pattern, and every traceable name is tried
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[*+}](?:[^()\\]|\\.)*\)(?:[*+]|\{\d*,)")
MAX_EVENT_RE = 1000  # characters: bcc tools' patterns are a few dozen


def _event_re(pattern: str) -> tuple[re.Pattern[str] | None, str]:
    """bcc's event_re compiled, or None and why it is not run: a shape that can take exponential
    time against ~50k names (the bcc reader has refused syntax errors already; a pattern given
    otherwise gets the same words)."""
    if len(pattern) > MAX_EVENT_RE or _NESTED_QUANTIFIER.search(pattern):
        return None, (f"event_re {pattern[:60]!r} is not run: a quantifier over a group that holds one can take "
                      "exponential time (rewrite it without the nested repetition)")
    try:
        return re.compile(pattern), ""
    except re.error as exc:
        return None, f"bcc cannot compile event_re: {exc}: {pattern[:60]!r}"


def _traceable_names(kernel: Kernel) -> list[tuple[str, str | None]]:
    """Functions with an ftrace site: what available_filter_functions lists."""
    return [(name, image.name if image.is_module else None) for image in kernel.images
            for name in image.traceable.names]


# Names bcc's get_kprobe_functions leaves out of every event_re match, whatever the kernel says
# (src/python/bcc/__init__.py): perf's own functions, static-call trampolines, gcc's .cold pieces
_BCC_SKIPS = re.compile(r"(?:_kbl_addr_|__perf|perf_|__SCT__).*|.*\.cold(?:\.\d+)?")


def _bcc_kprobe_functions(kernel: Kernel, names: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """What bcc's get_kprobe_functions lists of the traceable functions (the newest bcc's, which
    also keeps to available_filter_functions): neither on the kprobe blacklist nor in init text,
    nor named as bcc skips them (`_BCC_SKIPS`)."""
    refused = {(name, image.name if image.is_module else None) for image in kernel.images
               for name in image.traceable.refused}
    return [(n, m) for n, m in names if (n, m) not in refused and not _BCC_SKIPS.fullmatch(n)]


def resolve_source_lines(kernel: Kernel, parsed: list[Parsed], cache: IndexCache | None = None) -> list[Parsed]:
    """Replace each perf source-line probe by one probe per address perf would probe (named by
    the symbol that holds it, as perf names it offline), or by the reason perf finds none."""
    if not any(isinstance(p, SourceLineProbe) for p in parsed):
        return parsed
    from probelint.readers.perf_lines import DwarfLines

    image = kernel.vmlinux
    lines = DwarfLines(image, cache) if image is not None else None
    out: list[Parsed] = []
    for item in parsed:
        if not isinstance(item, SourceLineProbe):
            out.append(item)
            continue
        if lines is None:
            out.append(ParseProblem(item.text, item.location, "perf source-line probes need the vmlinux (with DWARF)",
                                    unsupported=True, origin=item.origin))
            continue
        found = lines.resolve(item.point)
        if found.error is not None and item.tool == "systemtap":  # perf's words, not SystemTap's: not checked
            out.append(ParseProblem(item.text, item.location, f"SystemTap's DWARF lookup is modelled with perf's, "
                                    f"which places no probe here ({found.error})", unsupported=True,
                                    origin=item.origin))
            continue
        if found.error is not None:
            out.append(ParseProblem(item.text, item.location, found.error, unsupported=found.unsupported,
                                    origin=item.origin))
            continue
        addresses = found.addresses
        if item.inline_only and image is not None:  # SystemTap .inline: not the out-of-line entry
            entry = image.symbols.lookup_name(item.point.function or "")
            addresses = tuple(a for a in addresses if entry is None or a != entry.address)
            if not addresses:
                out.append(ParseProblem(item.text, item.location, f"{item.point.function} has no inlined copy: "
                                        "SystemTap refuses .inline here (\"semantic error: no match\")",
                                        origin=item.origin))
                continue
        for address in addresses:
            sym = image.symbols.lookup(address) if image is not None else None
            if sym is None:
                out.append(ParseProblem(item.text, item.location, f"perf resolves it to {address:#x}, in no symbol",
                                        origin=item.origin))
                continue
            offset = address - sym.address
            target = f"{sym.name}+{offset:#x}" if offset else sym.name
            out.append(ProbeSpec(f"{item.text} -> {target}", item.location, False, sym.name, None, offset, None,
                                 origin=item.origin))
    if lines is not None:
        lines.save()
    return out
