"""SystemTap scripts (``.stp``, or a stap shebang): ``kprobe.function``, ``kernel.function("F")[.return]``,
``kernel.statement("[F@]FILE:LINE")``, as SystemTap 4.8 places them."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import NamedTuple

from probelint.findings import Location
from probelint.readers import tapsets
from probelint.readers.spec import (
    REGISTER_KPROBE,
    Origin,
    Parsed,
    ParseProblem,
    PerfPoint,
    SourceLineProbe,
    parse_target,
    with_origin,
)
from probelint.readers.text import Lines, blank

__all__ = ["BLOCKLIST", "BLOCKLIST_RETURN", "read"]

# SystemTap 4.8's own blocklist of kernel functions (tapsets.cxx, printed by `stap -vvv -p2`):
# a kernel.function probe on one of them fails with "semantic error: no match".
BLOCKLIST = re.compile(
    r"(atomic_notifier_call_chain|default_do_nmi|__die|die_nmi|do_debug|do_general_protection|do_int3|do_IRQ|"
    r"do_page_fault|do_sparc64_fault|do_trap|dummy_nmi_callback|flush_icache_range|ia64_bad_break|"
    r"ia64_do_page_fault|ia64_fault|io_check_error|mem_parity_error|nmi_watchdog_tick|notifier_call_chain|"
    r"oops_begin|oops_end|program_check_exception|single_step_exception|sync_regs|unhandled_fault|"
    r"unknown_nmi_error|xen_[gs]et_debugreg|xen_irq_.*|xen_.*_fl_direct.*|check_events|"
    r"xen_adjust_exception_frame|xen_iret.*|xen_sysret64.*|test_ti_thread_flag.*|inat_get_opcode_attribute|"
    r"system_call_after_swapgs|HYPERVISOR_[gs]et_debugreg|HYPERVISOR_event_channel_op|hash_64|hash_ptr|"
    r"native_set_pte|.*raw_.*_lock.*|.*raw_.*_unlock.*|.*raw_.*_trylock.*|.*read_lock.*|.*read_unlock.*|"
    r".*read_trylock.*|.*write_lock.*|.*write_unlock.*|.*write_trylock.*|.*write_seqlock.*|"
    r".*write_sequnlock.*|.*spin_lock.*|.*spin_unlock.*|.*spin_trylock.*|.*spin_is_locked.*|rwsem_.*lock.*|"
    r".*mutex_.*lock.*|atomic_.*|atomic64_.*|get_bh|put_bh|.*apic.*|.*APIC.*|.*softirq.*|.*IRQ.*|.*_intr.*|"
    r"__delay|.*kernel_text.*|get_current|current_.*|.*exception_tables.*|.*setup_rt_frame.*|"
    r".*preempt_count.*|preempt_schedule|__switch_to|special_mapping_.*|.*_pte_.*)")
BLOCKLIST_RETURN = re.compile(r"do_exit|sys_exit|sys_exit_group")

_PROBE = re.compile(r"""\b(kprobe\.function|kernel\.function|kernel\.statement)\(\s*"([^"]*)"\s*\)((?:\.\w+)*)""")
_MODULE = re.compile(r"""\b(kprobe\.)?module\(\s*"([^"]*)"\s*\)\.(function|statement)\(\s*"([^"]*)"\s*\)((?:\.\w+)*)""")
# the tokens that delimit probe statements: strings (a brace in "vfs_{read,write}" is no block),
# braces, and the keyword that starts a statement
_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"')
_STATEMENT_TOKEN = re.compile(rf'{_STRING.pattern}|[{{}}]|\bprobe\b')
_ALTERNATION_TOKEN = re.compile(rf"{_STRING.pattern}|[{{}},]")
_FLAGS = re.compile(r"\s*([?!])")
# an unclosed /* runs to the end: searched to the end from each one, blanking was quadratic
_COMMENT = re.compile(r'"(?:\\.|[^"\\\n])*"|#[^\n]*|//[^\n]*|/\*.*?(?:\*/|\Z)', re.S)


def read(text: str, file: str) -> Iterator[Parsed]:
    """SystemTap probe points (``probe POINT[, POINT] { ... }``):

    * ``kprobe.function("F")`` is a plain kprobe at F (``.return``: a kretprobe), wildcards
      expanded like bpftrace's;
    * ``kernel.function("F").return`` is a kretprobe at F's entry;
    * ``kernel.statement("FILE:LINE")``, ``("F@FILE:LINE")``: the address of that line, resolved
      through DWARF with perf's model (`probelint.readers.perf_lines`); F only names the function;
    * ``kernel.function("F[@FILE]")`` (entry): F's out-of-line entry and the entries of its
      inlined copies, placed with perf's model of ``F[@FILE]`` keeping the copies perf drops as
      redundant (stap 4.8 searches prologues only in unoptimized code; 23 of 23 sampled functions
      give the same set of addresses as ``stap -p2``); ``.call`` is the out-of-line entry alone,
      ``.inline`` the inlined copies alone; lines and wildcards in F, and ``.statement`` forms
      with wildcards or ranges are not checked (KP407);
    * names on stap's own blocklist are refused as stap refuses them (KP001).

    SystemTap registers each point with register_kprobe() itself (runtime/linux/kprobes.c): the
    kprobe_events front end's tests do not apply. ``POINT ?`` is optional (skipped where it does
    not resolve; its registration failure is not reported either), ``POINT !`` optional and
    sufficient: once it resolves, the points after it in the same statement are not used."""
    # comments blanked; string literals kept whole (a '#' in one starts no comment)
    code = _COMMENT.sub(lambda m: m.group() if m.group().startswith('"') else blank(m), text)
    lines = Lines(file, text)
    headers = _statements(code)
    braced = [(start, end) for start, end, _, alternation in headers if alternation]
    found = [*_points(code, None, text, lines, headers, braced),
             *(point for start, end in braced for view, offsets in _alternatives(code, start, end)
               for point in _points(view, offsets, text, lines, headers, None)),
             *_alias_uses(code, lines, headers)]
    return (probe for _, probe in sorted(found, key=lambda found: found[0]))


def _points(view: str, offsets: list[int] | None, text: str, lines: Lines, headers: list[_Header],
            skip: list[tuple[int, int]] | None) -> Iterator[tuple[int, Parsed]]:
    """The probe points in `view`: the code itself (`offsets` None), or one expansion of a
    statement's component alternation, each character at its offset in the file. `skip`: the
    headers with alternations, read through their expansions instead."""
    def at(i: int) -> int:
        return i if offsets is None else offsets[i]

    def origin(m: re.Match[str], refusal: str) -> Origin:
        return _origin(view, m.end(), at(m.start()), headers, refusal)

    def skipped(m: re.Match[str]) -> bool:
        return bool(skip) and any(start <= m.start() < end for start, end in skip or ())

    for m in _MODULE.finditer(view):
        if not skipped(m):
            yield at(m.start(4)), with_origin(_module_point(m, text, lines, at), origin(m, _MODULE_REFUSAL))
    for m in _PROBE.finditer(view):
        if not skipped(m):
            name = text[at(m.start(2)) : at(m.start(2)) + len(m.group(2))]
            for each in _braces(name) if m.group(1) == "kprobe.function" else [name]:
                yield at(m.start(2)), with_origin(_point(m.group(1), each, m.group(3), lines.location(at(m.start(2)))),
                                                  origin(m, _KERNEL_REFUSAL))


_MAX_ALTERNATIVES = 1024  # expansions of one statement: stap expands them all, a file is no reason to


def _alternatives(code: str, start: int, end: int) -> Iterator[tuple[str, list[int]]]:
    """Each probe point a header's component alternation stands for (``kernel.{function("a"),
    function("b")}.return``, nested ``{...}`` too), with each character's offset in the file.
    A brace inside a string literal is the function name's (stap 4.8 reads it literally)."""
    pending = [(code[start:end], list(range(start, end)))]
    done = 0
    while pending and done < _MAX_ALTERNATIVES:
        view, offsets = pending.pop()
        tokens = [(m.start(), m.group()) for m in _ALTERNATION_TOKEN.finditer(view) if m.group()[0] != '"']
        opened = next((i for i, (_, t) in enumerate(tokens) if t == "{"), None)
        if opened is None:
            done += 1
            yield view, offsets
            continue
        depth, cuts = 0, [tokens[opened][0]]
        for position, token in tokens[opened:]:
            depth += {"{": 1, "}": -1}.get(token, 0)
            if (token == "," and depth == 1) or (token == "}" and depth == 0):
                cuts.append(position)
            if depth == 0:
                break
        close = cuts[-1]
        alternatives = [(cuts[k] + 1, cuts[k + 1]) for k in range(len(cuts) - 1)]
        for a, b in reversed(alternatives):
            pending.append((view[: cuts[0]] + view[a:b] + view[close + 1 :],
                            offsets[: cuts[0]] + offsets[a:b] + offsets[close + 1 :]))


def _module_point(m: re.Match[str], text: str, lines: Lines, at: Callable[[int], int]) -> Parsed:
    """``[kprobe.]module("M").function("F")[.call|.return]``: a probe at M:F's entry, as
    kprobe_events spells it. Statements, and functions with a file, line or other suffix, are not
    checked; a kernel-style function's inlined copies in the module are not placed."""
    module, kind, suffix = m.group(2), m.group(3), m.group(5)
    name, where = text[at(m.start(4)) : at(m.start(4)) + len(m.group(4))], lines.location(at(m.start(4)))
    plain = re.fullmatch(r"[A-Za-z_*?\[][\w.*?\[\]]*", name) is not None and re.fullmatch(r"\w+", module) is not None
    if kind != "function" or suffix not in ("", ".call", ".return") or not plain:
        return ParseProblem(name, where, f"SystemTap module(...).{kind}(\"{name}\"){suffix} is not checked",
                            unsupported=True)
    parsed = parse_target(f"{module}:{name}", where, is_return=suffix == ".return", allow_glob=True)
    return parsed._replace(text=f"{name} -> {module}:{name}")  # the literal names no module: no fix rewrites it


class _Header(NamedTuple):
    start: int
    end: int
    sufficient: bool  # has a ``!`` point
    alternation: bool  # has a component alternation ``{...,...}``


def _statements(code: str) -> list[_Header]:
    """Each probe statement's header: from ``probe`` at brace depth 0 to the ``{`` of its body
    (a ``{`` after ``probe``, ``.``, ``,`` or another such ``{`` opens an alternation of
    components instead). One pass over the text."""
    out: list[_Header] = []
    depth, start, alternation, braced = 0, None, 0, False
    for m in _STATEMENT_TOKEN.finditer(code):
        token = m.group()
        if token == "probe" and depth == 0 and start is None:
            start, alternation, braced = m.start(), 0, False
        elif token == "{":
            if depth == 0 and start is not None:
                before = code[start + len("probe") : m.start()].rstrip()
                if alternation or not before or before[-1] in ".,{=":
                    alternation, braced = alternation + 1, True
                    continue
                header = _STRING.sub("", code[start : m.start()])
                out.append(_Header(start, m.start(), "!" in header, braced))
                start = None
            depth += 1
        elif token == "}":
            if start is not None and depth == 0 and alternation:
                alternation -= 1
                continue
            depth = max(0, depth - 1)
    return out


# A point stap resolved (pass 2) that the kernel refuses: stapkp_register_probes keeps going
# (PR6749) and warns only of a required probe outside modules; the script runs without it.
_KERNEL_REFUSAL = ('SystemTap warns at run time ("probe ... registration error [man warning::pass5]") '
                   'and runs without this probe')
_MODULE_REFUSAL = "SystemTap runs without this probe and says nothing (it warns of the kernel's probes only)"


def _origin(code: str, end: int, start: int, headers: list[_Header], refusal: str) -> Origin:
    """The origin of the point that ends at `end`: its ``?``/``!`` flag and its statement's alternatives."""
    flag = _FLAGS.match(code, end)
    mark = flag.group(1) if flag else ""
    k = bisect_right(headers, (start, 1 << 62)) - 1  # the last header starting at or before the point
    statement = headers[k] if k >= 0 and start < headers[k][1] else None
    alternatives = statement[0] if statement is not None and statement[2] else None
    optional = f"an optional point: {mark}" if mark else None
    return Origin(REGISTER_KPROBE, "SystemTap", optional, alternatives, mark == "!", refusal=refusal)


def _point(kind: str, arg: str, suffix: str, where: Location) -> Parsed:
    """One ``kprobe.function``, ``kernel.function`` or ``kernel.statement`` probe point."""
    is_return = suffix == ".return"
    if re.search(r"\{[^}]*,[^}]*\}", arg):
        return ParseProblem(arg, where, f"SystemTap 4.8 reads the braces in \"{arg}\" literally: no function matches "
                                        "(stap: \"semantic error: no match\"); alternatives are written "
                                        "kernel.{function(\"A\"),function(\"B\")} or as a list of points")
    if kind == "kernel.function" and suffix == ".call" and re.fullmatch(r"[A-Za-z_]\w*", arg):
        # the out-of-line function only, not its inlined copies: its entry, as for kprobe.function
        return parse_target(arg, where)
    if kind == "kernel.function" and suffix == ".inline" and re.fullmatch(r"[A-Za-z_]\w*(?:@[\w./-]+)?", arg):
        # the entries of the inlined copies alone (stap: "no match" where there is none)
        function, _, file = arg.partition("@")
        return SourceLineProbe(arg, where, PerfPoint(function, file or None, 0, 0, every_instance=True),
                               tool="systemtap", inline_only=True)
    if suffix not in ("", ".return") or (kind == "kernel.statement" and suffix):
        return ParseProblem(arg, where, f"SystemTap {kind}{suffix} is not checked", unsupported=True)
    if kind == "kprobe.function":
        return parse_target(arg, where, is_return=is_return, allow_glob=True)
    if kind == "kernel.function":
        return _stap_function(arg, where, is_return)
    statement = re.fullmatch(r"(?:([A-Za-z_]\w*)@)?([\w./-]+):([0-9]+)", arg)
    if statement is None:
        return ParseProblem(arg, where, "SystemTap statement with wildcards or ranges is not checked",
                            unsupported=True)
    if len(statement.group(3)) > 9:  # no source file has a billion lines
        return ParseProblem(arg, where, f"line number {statement.group(3)[:12]}... is too large")
    return SourceLineProbe(arg, where, PerfPoint(None, statement.group(2), int(statement.group(3))))


def _stap_function(arg: str, where: Location, is_return: bool) -> Parsed:
    """``kernel.function("F[@FILE]")[.return]``. SystemTap 4.8 puts the entry probe of an
    optimized kernel's function at its entry address (the prologue search is for unoptimized
    code) and adds one at the entry of each copy inlined into other functions: the places perf's
    model gives ``F[@FILE]``. The return probe is a kretprobe on the entry."""
    named = re.fullmatch(r"([A-Za-z_]\w*)(?:@([\w./-]+))?", arg)
    function = named.group(1) if named else None
    blocklist = BLOCKLIST_RETURN if is_return else BLOCKLIST
    if function and (blocklist.fullmatch(function) or (is_return and BLOCKLIST.fullmatch(function))):
        return ParseProblem(arg, where, f"SystemTap refuses {function}: it is on its own blocklist of kernel "
                                        f"functions (stap: \"semantic error: no match\")")
    if is_return and "@" not in arg and ":" not in arg:
        return parse_target(arg, where, is_return=True, allow_glob=True)
    if named is None or is_return:
        return ParseProblem(arg, where, "SystemTap kernel.function with a line, wildcard or file and .return is not "
                                        "checked", unsupported=True)
    return SourceLineProbe(arg, where, PerfPoint(function, named.group(2), 0, 0, every_instance=True),
                           tool="systemtap")


def _braces(name: str) -> list[str]:
    """stap's kprobe.function matches its name as a glob with ``{a,b}`` alternatives (the tapsets'
    ``__{ia32,x64}_sys_read``), unlike kernel.function, which reads braces literally."""
    m = re.search(r"\{([^{}]*)\}", name)
    if m is None or "," not in m.group(1):
        return [name]
    return [e for part in m.group(1).split(",") for e in _braces(name[: m.start()] + part + name[m.end() :])]


# probe points without parentheses that are SystemTap's own, not tapset aliases (none is a kprobe)
_BUILTIN = frozenset({"begin", "end", "error", "never", "timer.profile", "kernel.trace", "kprobe.function"})
_USE = re.compile(r"[A-Za-z_][\w*?\[\]]*(?:\.[\w*?\[\]]+)*")
_HEADER_POINT = re.compile(r'"(?:\\.|[^"\\\n])*"|[(){}]|,')
_MAX_ALIAS_POINTS = 4096  # of one use (syscall.* stands for ~2200 points in stap 4.8's tapsets)


def _alias_uses(code: str, lines: Lines, headers: list[_Header]) -> Iterator[tuple[int, Parsed]]:
    """The kernel points of each tapset alias a probe statement names (``probe syscall.read``,
    ``vfs.*``), read through the installed tapsets (`probelint.readers.tapsets`), each at the
    alias and named with it; where the tapsets are missing or do not define the alias, KP407."""
    defined = {n.strip() for h in headers if "=" in code[h.start:h.end]
               for n in code[h.start + len("probe"):h.end].split("=")[0].rstrip("+").split(",")}
    table: tapsets.Tapsets | bool | None = False
    for header in headers:
        body = code[header.start + len("probe"):header.end]
        if header.alternation or "=" in _STRING.sub("", body):
            continue
        depth, begin = 0, 0
        for m in _HEADER_POINT.finditer(body + ","):
            token = m.group()
            depth += {"(": 1, "{": 1, ")": -1, "}": -1}.get(token, 0)
            if token != "," or depth:
                continue
            raw, begin, offset = body[begin:m.start()], m.end(), header.start + len("probe") + begin
            point = raw.strip()
            flag = point[-1] if point[-1:] in ("?", "!") else ""
            point = point.rstrip("?!").strip()
            if not _USE.fullmatch(point) or point in _BUILTIN or point.split(".")[0] in ("timer", "perf") \
                    or point in defined:
                continue
            where = offset + raw.index(point)
            if table is False:
                table = tapsets.load(tapsets.tapset_root())
            yield from ((where, p) for p in _expand_use(point, flag, table, lines.location(where), where))


def _expand_use(use: str, flag: str, table: tapsets.Tapsets | None, where: Location, at: int) -> Iterator[Parsed]:
    origin = Origin(REGISTER_KPROBE, "SystemTap", refusal=_KERNEL_REFUSAL)
    if flag:
        origin = origin._replace(optional=f"an optional point: {flag}")
    if table is None:
        yield ParseProblem(use, where, f"SystemTap tapset alias {use} is not checked: no tapsets installed "
                                       f"({tapsets.tapset_root()}; install systemtap or set SYSTEMTAP_TAPSET)",
                           unsupported=True, origin=origin)
        return
    names = tapsets.matching(table, use)
    if not names:
        yield ParseProblem(use, where, f"SystemTap tapset alias {use} is not checked: the tapsets in {table.root} "
                                       f"do not define it", unsupported=True, origin=origin)
        return
    # each alias a wildcard names is its own `!` list: keyed apart from each other and from the
    # statements' offsets (>= 0), which key the script's own lists
    points = [(point, f, -(at << 20) - k - 1) for k, name in enumerate(names[: 1 << 20])
              for point, f in tapsets.leaves(table, name, flag)]
    chained = {key for _, f, key in points if f == "!"}
    for index, (point, mark, key) in enumerate(points[:_MAX_ALIAS_POINTS]):
        leaf = origin._replace(optional=f"an optional point of {use} in the tapsets: {mark}" if mark else None,
                               alternatives=key if key in chained else None, sufficient=mark == "!", branch=index)
        for label, parsed in _leaf(point, use, where):
            yield with_origin(parsed._replace(text=f"{use} -> {label}" if label else use), leaf)
    if len(points) > _MAX_ALIAS_POINTS:
        yield ParseProblem(use, where, f"{use} stands for {len(points)} points in the tapsets: the first "
                                       f"{_MAX_ALIAS_POINTS} are checked, the other {len(points) - _MAX_ALIAS_POINTS} "
                                       f"are not", unsupported=True, origin=origin)


def _leaf(point: str, use: str, where: Location) -> list[tuple[str, Parsed]]:
    """One point of a tapset alias as the reader's own forms parse it, each with the point it is
    (a label; "" for a problem with the use itself); none for a point that is no kprobe (a
    tracepoint, a timer: the fallback ``kernel.trace("sys_enter")`` places nothing)."""
    if point.startswith(tapsets.UNDECIDED):
        condition = point[len(tapsets.UNDECIDED) + 2 : -2]
        return [("", ParseProblem(use, where, f"SystemTap tapset alias {use} is not checked: the tapsets choose "
                                             f"its points by %( {condition} %), a condition on the kernel probelint "
                                             f"does not evaluate", unsupported=True))]
    m = _MODULE.fullmatch(point)
    if m is not None:
        return [(point, _module_point(m, point, Lines("", point), lambda i: i)._replace(location=where))]
    m = _PROBE.fullmatch(point)
    if m is not None:
        names = _braces(m.group(2)) if m.group(1) == "kprobe.function" else [m.group(2)]
        return [(f'{m.group(1)}("{name}"){m.group(3)}', _point(m.group(1), name, m.group(3), where)) for name in names]
    if "(" in point or ("." not in point and point in _BUILTIN):
        return []
    return [("", ParseProblem(use, where, f"SystemTap tapset alias {use} is not checked: its point {point} is "
                                         f"defined by no tapset", unsupported=True))]
