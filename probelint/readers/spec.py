"""Probe-point grammars -> `ProbeSpec`.

One probe per line, ``#`` starts a comment. Accepted spellings (all parse to the same spec):

* plain: ``SYM``, ``SYM+OFF``, ``MOD:SYM+OFF``, ``0xADDR``, ``SYM%return``;
* kprobe_events lines: ``p[:[GRP/]EVENT] TARGET [FETCHARGS]``, ``r[N][:...] TARGET ...``;
  ``-:EVENT`` (delete) lines are skipped; in a probe list, perf-tools' ``p:SYMBOL [FETCHARGS]``
  (its kprobe script's event without a name) probes SYMBOL, while written to kprobe_events the
  same line names an event with no probe point, which the kernel refuses;
* bpftrace: ``kprobe:SYM+OFF``, ``kprobe:MOD:SYM``, ``kretprobe:SYM`` (and ``k:``/``kr:``).

Numbers follow the kernel's parser (kernel/trace/trace_kprobe.c `__trace_kprobe_create`): a
target that `kstrtoul(s, 0)` accepts is an address, so ``0x...`` is hex, a leading ``0`` is
octal and anything else decimal; the offset goes through `traceprobe_split_symbol_offset`
(`kstrtol(s, 0)` on the text from the first ``+`` or ``-``) and must lie in [0, UINT_MAX].
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from probelint.findings import Location

__all__ = ["KPROBE_EVENTS", "REGISTER_KPROBE", "Origin", "ParseProblem", "Parsed", "PerfPoint", "ProbeSpec",
           "SourceLineProbe", "parse_line", "parse_text", "with_origin"]

UINT_MAX = 0xFFFF_FFFF
KRETPROBE_MAXACTIVE_MAX = 4096  # kernel/trace/trace_kprobe.c

_EVENT_HEAD = re.compile(r"^(?P<kind>[pr])(?P<maxactive>[0-9][0-9a-fA-FxX]*)?(?::(?P<event>\S*))?$")
_BPFTRACE_HEAD = re.compile(r"^(?P<kind>kprobe|kretprobe|k|kr):(?P<rest>\S+)$")


# How a tool hands a probe to the kernel. kprobe_events, the perf kprobe PMU (perf, bpftrace,
# libbpf, bcc) go through kernel/trace/trace_kprobe.c, whose front end refuses notrace functions
# (within_notrace_func) and validates the symbol before register_kprobe(); SystemTap and kernel
# modules call register_kprobe() themselves (systemtap runtime/linux/kprobes.c) and skip those tests.
KPROBE_EVENTS = "kprobe_events"
REGISTER_KPROBE = "register_kprobe"


class Origin(NamedTuple):
    """Whose probe it is: the registration path its verdict assumes, and what the tool does when
    the probe cannot be placed."""

    path: str = KPROBE_EVENTS
    tool: str = "kprobe_events"  # for the messages: "bpftrace", "SystemTap", ...
    # why the tool skips the probe instead of failing when it cannot be placed (None: it fails):
    # SystemTap ``A ?``, bpftrace ``config = { missing_probes = ignore }``
    optional: str | None = None
    # SystemTap ``A !, B``: the offset of the probe statement whose points are alternatives, the
    # first that resolves taken (None: not part of such a list); `sufficient` marks ``A !``
    alternatives: int | None = None
    sufficient: bool = False
    # bcc's `if get_kprobe_functions(b"F"): ... else: ...` and try/except around attach_kprobe:
    # the branch of that chain the probe is in (None: each point is its own branch, as in SystemTap);
    # a `sufficient` probe is one whose placing decides its branch is taken: not refused for any of
    # `decided_by` (empty: registers at all, as a try body must)
    arm: int | None = None
    decided_by: tuple[str, ...] = ("KP101",)
    # bpftrace: the other attach points of the probe's block (a wildcard that matches nothing is
    # dropped from a block that keeps others)
    siblings: int = 0
    # what the tool does when the kernel refuses a required probe it has resolved, where it runs on
    # without it (SystemTap warns at run time); None: the tool fails
    refusal: str | None = None
    # SystemTap tapset alias: which of the points one use of the alias stands for (they share its
    # location, each its own `!` branch)
    branch: int | None = None
    # a probe its tool never registers, and why (libbpf: a program whose loader switches its
    # autoload off): KP411 "not used"
    unused: str | None = None
    # what the tool took from elsewhere than the probe's own text (libbpf: the loader beside the
    # BPF C attaches the program itself), said at info level by KP411
    loader: str | None = None


DEFAULT_ORIGIN = Origin()


class ProbeSpec(NamedTuple):
    """A probe point as the user wrote it, before it is looked up in any image."""

    text: str  # the probe token exactly as written (without event name or fetchargs)
    location: Location  # of the probe token itself
    is_return: bool
    symbol: str | None  # None for an address probe
    module: str | None
    offset: int
    address: int | None
    octal_offset: bool = False  # the offset had a leading 0: the kernel read it as octal
    suppressed: frozenset[str] = frozenset()  # rule ids in a ``# probelint: ignore[...]`` comment
    disabled: bool = False  # ``# probelint: disabled``: registered but not enabled (never armed)
    expanded_from: ProbeSpec | None = None  # the wildcard this probe is one match of
    matches: int = 0  # of that wildcard: how many functions it matched (more than are checked past a cap)
    origin: Origin = DEFAULT_ORIGIN
    regex: bool = False  # `symbol` is a regular expression matched whole (bcc's event_re), not a glob

    @property
    def is_glob(self) -> bool:
        """A wildcard (bpftrace, kprobe.multi) or a bcc event_re: expanded against the kernel's
        traceable functions."""
        return self.symbol is not None and (self.regex or any(c in self.symbol for c in "*?["))

    @property
    def canonical(self) -> str:
        """The probe in kprobe_events target syntax (``MOD:SYM+0x10``, ``0xffff...``)."""
        if self.symbol is None:
            return f"{self.address:#x}"
        head = f"{self.module}:{self.symbol}" if self.module else self.symbol
        body = f"{head}+{self.offset:#x}" if self.offset else head
        return body + ("%return" if self.is_return and not self.offset else "")


class PerfPoint(NamedTuple):
    """perf's `perf_probe_point` for the DWARF forms (`parse_perf_probe_point`)."""

    function: str | None
    file: str | None
    line: int = 0  # relative to FUNC's decl line when `function` is set; 0: none
    offset: int = 0
    # SystemTap keeps the inlined instances perf drops as redundant (a call site on the function's
    # own declaration line: a copy inlined into the function itself)
    every_instance: bool = False


class ParseProblem(NamedTuple):
    """A line that is not a probe in any accepted syntax."""

    text: str
    location: Location
    message: str
    unsupported: bool = False  # valid syntax probelint cannot check yet (KP407), not a mistake (KP001)
    origin: Origin = DEFAULT_ORIGIN


class SourceLineProbe(NamedTuple):
    """A probe point placed through the kernel's DWARF (perf's source lines and functions,
    SystemTap's ``kernel.function`` and ``kernel.statement``): resolved with perf's model."""

    text: str  # the probe token as written
    location: Location
    point: PerfPoint
    tool: str = "perf"  # whose probe it is, for the messages
    origin: Origin = DEFAULT_ORIGIN
    inline_only: bool = False  # SystemTap ``.inline``: the inlined copies, not the out-of-line entry


Parsed = ProbeSpec | ParseProblem | SourceLineProbe  # what a reader gives for each probe it finds


def with_origin(parsed: Parsed, origin: Origin) -> Parsed:
    """`parsed` as a probe of the tool `origin` describes."""
    return parsed._replace(origin=origin)

_NUMBER = re.compile(r"\+?(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))")


def _kstrtoul(text: str) -> int | None:
    """`kstrtoul(s, 0)`: an optional ``+``, then 0x-hex, 0-octal or decimal; None if invalid."""
    found = _NUMBER.fullmatch(text)
    if found is None:
        return None
    hexadecimal, octal, decimal = found.groups()
    if decimal and len(decimal) > 20:  # past 2**64 whatever the digits (and past Python's 4300-digit limit)
        return 1 << 64
    return int(hexadecimal, 16) if hexadecimal else int(octal, 8) if octal else int(decimal)


_OFFSET_SIGN = re.compile(r"[+-]")
_NAME = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*")
_GLOB_NAME = re.compile(r"[A-Za-z_.$*?\[][A-Za-z0-9_.$*?\[\]]*")
_DISABLED = re.compile(r"probelint:\s*disabled\b")
_TOKEN = re.compile(r"\S+")


def _kstrtol(text: str) -> int | None:
    """`kstrtol(s, 0)`: like `_kstrtoul` with an optional leading minus sign."""
    if text.startswith("-"):
        value = _kstrtoul(text[1:])
        return None if value is None else -value
    return _kstrtoul(text)


def parse_target(
    text: str, location: Location, *, is_return: bool = False, allow_glob: bool = False
) -> ProbeSpec | ParseProblem:
    """Parse ``[MOD:]SYM[+OFF][%return]`` or an address, as `__trace_kprobe_create` does."""
    address = _kstrtoul(text)
    if address is not None:
        if address > 0xFFFF_FFFF_FFFF_FFFF:
            return ParseProblem(text, location, "address does not fit in 64 bits")
        return ProbeSpec(text, location, is_return, None, None, 0, address)
    symbol = text
    if "%" in symbol:
        symbol, _, suffix = symbol.partition("%")
        if suffix != "return":
            return ParseProblem(text, location, f"unknown suffix %{suffix} (only %return is accepted)")
        is_return = True
    offset, octal = 0, False
    split = _OFFSET_SIGN.search(symbol)
    if split:
        offset_text = symbol[split.start() :]
        symbol = symbol[: split.start()]
        value = _kstrtol(offset_text)
        if value is None:
            return ParseProblem(text, location, f"bad offset {offset_text!r}")
        if value < 0 or value > UINT_MAX:
            return ParseProblem(text, location, f"offset {offset_text} is outside 0..UINT_MAX")
        offset = value
        digits = offset_text.lstrip("+")
        octal = len(digits) > 1 and digits.startswith("0") and digits[1] not in "xX"
    module = None
    if ":" in symbol:
        module, _, symbol = symbol.partition(":")
        if not module:
            return ParseProblem(text, location, "empty module name before ':'")
    if not symbol or not (_GLOB_NAME if allow_glob else _NAME).fullmatch(symbol):
        return ParseProblem(text, location, f"{symbol!r} is not a symbol name")
    return ProbeSpec(text, location, is_return, symbol, module, offset, None, octal)


_SUPPRESSION = re.compile(r"probelint:\s*ignore\[([A-Za-z0-9_, ]*)\]")


def parse_line(line: str, file: str, lineno: int, *, kprobe_events: bool = False) -> ProbeSpec | ParseProblem | None:
    """Parse one line; None for blank, comment and ``-:`` delete lines. `kprobe_events`: the line
    is written to kprobe_events (a shell ``echo``), not read from a probe list."""
    parsed = _parse_code(line, file, lineno, kprobe_events)
    comment = line.split("#", 1)[1] if "#" in line else ""
    found = _SUPPRESSION.search(comment)
    if isinstance(parsed, ProbeSpec) and found:
        ids = frozenset(t.strip().upper() for t in found.group(1).split(",") if t.strip())
        parsed = parsed._replace(suppressed=ids)
    if isinstance(parsed, ProbeSpec) and _DISABLED.search(comment):
        parsed = parsed._replace(disabled=True)
    return parsed


def _parse_code(line: str, file: str, lineno: int, kprobe_events: bool) -> ProbeSpec | ParseProblem | None:
    code = line.split("#", 1)[0]
    tokens = [(m.start(), m.group()) for m in _TOKEN.finditer(code)]
    if not tokens:
        return None
    column, first = tokens[0]
    where = Location(file, lineno, column + 1)
    if first.startswith("-:"):
        return None
    head = _EVENT_HEAD.match(first)
    if head and kprobe_events and len(tokens) == 1:
        # __trace_kprobe_create: fewer than two words is -ECANCELED, which the write returns as -EINVAL
        named = f"reads {head.group('event')!r} as the event name and " if head.group("event") else ""
        return ParseProblem(first, where, f"kprobe_events {named}finds no probe point: the write fails with EINVAL "
                                          "(it takes p:EVENT SYMBOL; p:SYMBOL alone is perf-tools' kprobe shorthand)")
    if head and not kprobe_events and _perf_tools_shorthand(head, tokens):
        event = Location(file, lineno, column + 3)
        return parse_target(head.group("event"), event, is_return=head.group("kind") == "r")
    if head and len(tokens) >= 2:
        return _parse_event_line(head, tokens, file, lineno)
    if len(tokens) > 1:
        return ParseProblem(code.strip(), where, "expected one probe per line")
    bpf = _BPFTRACE_HEAD.match(first)
    if bpf:
        prefix = len(bpf.group("kind")) + 1
        rest = Location(file, lineno, column + 1 + prefix)
        return parse_target(bpf.group("rest"), rest, is_return=bpf.group("kind") in ("kretprobe", "kr"))
    return parse_target(first, where)


# a kprobe_events FETCHARG that cannot be a probe target: NAME=ARG, %REG, $VAR, @ADDR, +|-OFFS(ARG), \\IMM
_FETCHARG = re.compile(r"[%$@+\\-]|[^=]*=")


def _perf_tools_shorthand(head: re.Match[str], tokens: list[tuple[int, str]]) -> bool:
    """perf-tools' kprobe script (kernel/kprobe): ``p:SYMBOL [FETCHARGS]`` and ``r:SYMBOL ...``
    probe SYMBOL under an event of the same name; kprobe_events itself would read SYMBOL as the
    event name and find no target."""
    return (head.group("maxactive") is None and bool(head.group("event"))
            and (len(tokens) == 1 or _FETCHARG.match(tokens[1][1]) is not None))


def _parse_event_line(
    head: re.Match[str], tokens: list[tuple[int, str]], file: str, lineno: int
) -> ProbeSpec | ParseProblem:
    """A kprobe_events definition: ``p[:[GRP/]EVENT] TARGET [FETCHARGS]``."""
    is_return = head.group("kind") == "r"
    column, target = tokens[1]
    where = Location(file, lineno, column + 1)
    maxactive = head.group("maxactive")
    if maxactive is not None:
        here = Location(file, lineno, tokens[0][0] + 2)
        if not is_return:
            return ParseProblem(tokens[0][1], here, "MAXACTIVE is only for return probes (r<N>:...)")
        value = _kstrtoul(maxactive)
        if not value or value > KRETPROBE_MAXACTIVE_MAX:
            return ParseProblem(tokens[0][1], here, f"MAXACTIVE must be 1..{KRETPROBE_MAXACTIVE_MAX}")
    return parse_target(target, where, is_return=is_return)


def parse_text(text: str, file: str) -> Iterator[ProbeSpec | ParseProblem]:
    # lines end at "\n" only, as the other readers and --fix count them (not str.splitlines:
    # a form feed or U+2028 inside a line must not shift the lines after it); one line at a time,
    # so that a reader stopped at the probe cap never holds the whole file as lines
    start, lineno = 0, 1
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        parsed = parse_line(text[start:end], file, lineno)
        if parsed is not None:
            yield parsed
        start, lineno = end + 1, lineno + 1


def parse_files(named_texts: Iterable[tuple[str, str]]) -> list[ProbeSpec | ParseProblem]:
    """All probes of one invocation, in input order: they form one set."""
    return [p for name, text in named_texts for p in parse_text(text, name)]
