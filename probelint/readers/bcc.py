"""bcc Python tools (``.py`` or a python shebang, with ``attach_kprobe`` calls or ``kprobe__FN``
functions): read as text with `ast.parse`, never imported or run.

* ``attach_kprobe(event="F", event_off=N)``, ``attach_kretprobe(event="F")`` (or the event as the
  first positional argument): a probe at F;
* ``event_re="RE"``: every traceable function RE matches whole (the newest bcc's
  `get_kprobe_functions`, `re.fullmatch`; Debian 12's bcc 0.26 uses `re.match`, which also
  takes the names RE only begins), less those bcc leaves out (`probelint.resolve`: blacklisted,
  init text, ``perf_``/``__perf``/``__SCT__`` names, ``.cold`` pieces), expanded like a
  wildcard; bcc skips a match that fails to attach and fails only when none attaches, so each
  match is optional;
* the event computed by ``get_syscall_fnname("x")`` (bcc's x86-64 prefix ``__x64_sys_``), or a
  variable assigned one string literal in the file: resolved; anything else is computed at run
  time: not checked (KP407), located at the expression;
* ``kprobe__F`` / ``kretprobe__F`` functions in the embedded C text, or in the C file
  ``BPF(src_file="x.c")`` names (beside the script, where bcc finds it): bcc attaches them
  itself, to ``fix_syscall_fnname(F)`` (``sys_x`` becomes ``__x64_sys_x``);
* guarded attaches, as tools that run on many kernels write them: ``if BPF.get_kprobe_functions(
  b"F"):`` / ``elif`` / ``else`` (or ``BPF.ksymname("F") != -1``), and try/except around attach
  calls. Each branch is an alternative (`Origin.arm`); KP411 says which one bcc takes and that
  the others are not used, instead of an error for a function the tool skips on purpose.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator

from probelint.errors import InputError
from probelint.fileio import read_regular
from probelint.findings import Location
from probelint.readers.spec import Origin, Parsed, ParseProblem, ProbeSpec, parse_target, with_origin
from probelint.readers.text import Lines, blank

__all__ = ["SYSCALL_PREFIX", "looks_like_bcc", "read"]

# bcc's get_syscall_prefix(): the first of its prefixes whose `bpf` syscall exists; x86-64 kernels
# since 4.17 (ARCH_HAS_SYSCALL_WRAPPER) have __x64_sys_bpf, and probelint models x86-64 only
SYSCALL_PREFIX = "__x64_sys_"
_SYSCALL_PREFIXES = ("sys_", "__x64_sys_", "__x32_compat_sys_", "__ia32_compat_sys_")

_ATTACH = ("attach_kprobe", "attach_kretprobe")
_MARKERS = re.compile(r"\battach_k(?:ret)?probe\b|\bk(?:ret)?probe__\w|\bsrc_file\s*=")
_AUTOLOAD = re.compile(r"\b(kprobe|kretprobe)__(\w+)\s*\(")

_BCC = Origin(tool="bcc")  # through the perf kprobe PMU (bpf_attach_kprobe): trace_kprobe's tests apply
_EACH_MATCH = Origin(tool="bcc", optional="event_re: bcc skips a match it cannot attach (it fails only when none "
                                          "attaches)")


def looks_like_bcc(text: str) -> bool:
    """A Python program that attaches kprobes with bcc."""
    return _MARKERS.search(text) is not None


def read(text: str, file: str) -> Iterator[Parsed]:
    lines = Lines(file, text)
    try:
        tree = ast.parse(text, file)
    except (SyntaxError, ValueError) as exc:  # Python 2 tools; a NUL byte
        line, column = getattr(exc, "lineno", None) or 1, getattr(exc, "offset", None) or 1
        yield ParseProblem(text.split("\n")[line - 1].strip()[:60] if text else "", Location(file, line, column),
                           f"not Python 3 (bcc tools are read with Python's own parser): {getattr(exc, 'msg', exc)}")
        return
    offsets = _Offsets(text)
    nodes = list(ast.walk(tree))  # walked once: ast.walk is a Python generator, a tool's tree ~4,000 nodes
    strings = [(offsets.start(n), offsets.end(n)) for n in nodes
               if isinstance(n, ast.Constant | ast.JoinedStr) and isinstance(getattr(n, "value", ""), str)]
    assigned = _assigned_strings(nodes)
    found: list[tuple[int, Parsed]] = []
    guarded = _guarded(nodes, text, offsets, lines, assigned)
    for node in nodes:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _ATTACH:
            found += _attach(node, node.func.attr == "attach_kretprobe", text, offsets, lines, assigned,
                             guarded.get(id(node), _BCC))
        elif isinstance(node, ast.Call) and any(k.arg == "src_file" for k in node.keywords):
            found += _src_file(next(k.value for k in node.keywords if k.arg == "src_file"), file, text, offsets,
                               lines, assigned)
    found += ((m.start(), probe) for m, probe in _autoload(text, lines)
              if any(start <= m.start() < end for start, end in strings))
    # in the order of the probe tokens (an event named through a variable is at its literal)
    yield from sorted((probe for _, probe in found), key=lambda p: (p.location.file != file, p.location.line,
                                                                    p.location.column))


def _autoload(text: str, lines: Lines) -> Iterator[tuple[re.Match[str], Parsed]]:
    """The ``kprobe__F`` / ``kretprobe__F`` functions of C text, each a probe bcc attaches itself."""
    for m in _AUTOLOAD.finditer(text):
        name = _fix_syscall_fnname(m.group(2))
        spec = parse_target(name, lines.location(m.start(2)), is_return=m.group(1) == "kretprobe")
        if name != m.group(2) and isinstance(spec, ProbeSpec):
            spec = spec._replace(text=m.group(2) + " -> " + name)
        yield m, with_origin(spec, _BCC)


_C_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
MAX_SRC_FILE = 1 << 20  # bytes: a BPF C file of bcc's tools is a few KiB


def _src_file(node: ast.expr, file: str, text: str, offsets: _Offsets, lines: Lines,
              assigned: dict[str, ast.Constant | None]) -> Iterator[tuple[int, Parsed]]:
    """``BPF(src_file="x.c")``: the kprobe__ functions of that file, which bcc (`_find_file`)
    looks for as given, then beside the script."""
    literal = _string(node, assigned)
    if literal is None:
        yield offsets.start(node), _dynamic(node, "src_file", text, offsets, lines)
        return
    name = _text(literal)
    here = os.path.dirname(file)
    path = name if os.path.isabs(name) else os.path.join(here, name)
    try:
        c_text = read_regular(path, MAX_SRC_FILE, "a BPF C file").decode(errors="replace")
    except InputError as exc:
        where = lines.location(_literal_start(literal, text, offsets))
        yield offsets.start(node), with_origin(ParseProblem(name, where, f"bcc's src_file is not read: {exc.detail}",
                                                            unsupported=True), _BCC)
        return
    code = _C_COMMENT.sub(blank, c_text)
    c_lines = Lines(path, c_text)
    yield from ((offsets.start(node), probe) for _, probe in _autoload(code, c_lines))


# bcc's tests of whether a function is there (its guard is true): get_kprobe_functions lists kallsyms
# text symbols neither on the kprobe blacklist nor (bcc >= 0.29) missing from
# available_filter_functions; ksymname any kallsyms name. The rules whose refusal makes it false:
_GUARDS = {"get_kprobe_functions": ("KP101", "KP105", "KP106"), "ksymname": ("KP101",)}


def _guard(test: ast.expr, assigned: dict[str, ast.Constant | None]) -> tuple[str, str] | None:
    """(function, bcc call) of a test that holds where bcc finds a function: ``get_kprobe_functions(
    b"F")`` (a plain name: bcc matches it as a regular expression), ``ksymname("F") != -1``."""
    if (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.NotEq)
            and _number(test.comparators[0]) == -1):
        test = test.left
    if (isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) and test.func.attr in _GUARDS
            and len(test.args) == 1):
        literal = _string(test.args[0], assigned)
        if literal is not None and re.fullmatch(r"\w+", _text(literal)):
            return _text(literal), test.func.attr
    return None


def _number(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _guarded(nodes: list[ast.AST], text: str, offsets: _Offsets, lines: Lines,
             assigned: dict[str, ast.Constant | None]) -> dict[int, Origin]:
    """The origin of each attach call (by id) in a guarded chain: an if/elif/else whose tests are
    bcc guards, or a try whose except branches attach instead. An inner chain wins over an outer.
    `nodes`: the tree's, in ast.walk's order (outer before inner)."""
    out: dict[int, Origin] = {}
    elifs: set[int] = set()
    for node in nodes:
        if isinstance(node, ast.If) and id(node) not in elifs:
            branches: list[tuple[list[ast.stmt], tuple[str, str] | None, str]] = []
            at: ast.If | None = node
            while at is not None:
                where = lines.location(offsets.start(at.test))
                condition = text[offsets.start(at.test) : offsets.end(at.test)]
                branches.append((at.body, _guard(at.test, assigned), f"attached only where `{condition[:80]}` "
                                 f"holds, line {where.line}"))
                rest = at.orelse
                at = rest[0] if len(rest) == 1 and isinstance(rest[0], ast.If) else None
                if at is not None:
                    elifs.add(id(at))
                elif rest:
                    branches.append((rest, None, f"attached only where `{condition[:80]}` does not hold, "
                                                 f"line {where.line}"))
            if any(guard for _, guard, _ in branches):
                out.update(_chain(node, branches, offsets, assigned))
        elif isinstance(node, ast.Try) and node.handlers:
            handler = lines.location(offsets.start(node.handlers[0]))
            why = f"in a try: where an attach fails, bcc raises and the except branch at line {handler.line} runs"
            tried: list[tuple[list[ast.stmt], tuple[str, str] | None, str]] = [
                (node.body + node.orelse, ("", "try"), why)]
            tried += [(h.body, None, f"attached only where the try at line {lines.location(offsets.start(node)).line} "
                                     "fails") for h in node.handlers]
            if _calls(tried[0][0]) and any(_calls(body) for body, _, _ in tried[1:]):
                out.update(_chain(node, tried, offsets, assigned))
    return out


def _calls(body: list[ast.stmt]) -> list[ast.Call]:
    return [n for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in _ATTACH]


def _chain(node: ast.stmt, branches: list[tuple[list[ast.stmt], tuple[str, str] | None, str]], offsets: _Offsets,
           assigned: dict[str, ast.Constant | None]) -> dict[int, Origin]:
    """Origins of the attach calls of one chain's branches. A branch is decided by its attaches of
    the guard's function (all of them in a try body); where a guarded branch attaches none (the
    guard tests another function), which branch bcc takes is not modelled: each is optional."""
    calls = [_calls(body) for body, _, _ in branches]
    decided = [[c for c in found if guard is not None and (guard[1] == "try" or _event(
        _event_arg(c), assigned)[0] == guard[0])] for found, (_, guard, _) in zip(calls, branches, strict=True)]
    modelled = all(deciding or not found or guard is None
                   for found, deciding, (_, guard, _) in zip(calls, decided, branches, strict=True))
    out: dict[int, Origin] = {}
    chain = offsets.start(node)
    for arm, (found, deciding, (_, guard, why)) in enumerate(zip(calls, decided, branches, strict=True)):
        for call in found:
            if not modelled:
                out[id(call)] = Origin(tool="bcc", optional=why)
            else:
                by = _GUARDS.get(guard[1], ()) if guard is not None else ("KP101",)
                out[id(call)] = Origin(tool="bcc", optional=why if guard is not None else None, alternatives=chain,
                                       sufficient=call in deciding, arm=arm, decided_by=by)
    return out


def _event_arg(call: ast.Call) -> ast.expr:
    return next((k.value for k in call.keywords if k.arg == "event"), call.args[0] if call.args else ast.Constant(""))


class _Offsets:
    """Text offsets of ast nodes (whose columns count UTF-8 bytes)."""

    def __init__(self, text: str) -> None:
        self._lines = text.split("\n")
        self._starts = [0]
        for line in self._lines:
            self._starts.append(self._starts[-1] + len(line) + 1)

    def _at(self, line: int, byte: int) -> int:
        return self._starts[line - 1] + len(self._lines[line - 1].encode()[:byte].decode(errors="ignore"))

    def start(self, node: ast.AST) -> int:
        return self._at(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def end(self, node: ast.AST) -> int:
        return self._at(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]


def _assigned_strings(nodes: list[ast.AST]) -> dict[str, ast.Constant | None]:
    """Names assigned a string literal in the tree of `nodes`, each with its only literal (None:
    assigned more than once or something else as well: its value is known only at run time)."""
    out: dict[str, ast.Constant | None] = {}
    for node in nodes:
        if isinstance(node, ast.arg):  # a parameter: whatever the caller passes
            out[node.arg] = None
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign | ast.AugAssign | ast.For | ast.NamedExpr) else []
        value = getattr(node, "value", None) if not isinstance(node, ast.AugAssign | ast.For) else None
        for target in targets:
            if isinstance(target, ast.Name):
                literal = value if isinstance(value, ast.Constant) and isinstance(value.value, str | bytes) else None
                out[target.id] = literal if target.id not in out else None
    return out


def _fix_syscall_fnname(name: str) -> str:
    """bcc's fix_syscall_fnname: a name with any syscall prefix gets this kernel's."""
    prefix = next((p for p in _SYSCALL_PREFIXES if name.startswith(p)), None)
    return SYSCALL_PREFIX + name[len(prefix):] if prefix else name


def _literal_start(node: ast.Constant, text: str, offsets: _Offsets) -> int:
    """Offset of a string literal's first character (past its prefix and quotes)."""
    start = offsets.start(node)
    m = re.compile(r"[rRbBuU]*('''|\"\"\"|'|\")").match(text, start)
    return m.end() if m else start


def _attach(call: ast.Call, is_return: bool, text: str, offsets: _Offsets, lines: Lines,
            assigned: dict[str, ast.Constant | None], origin: Origin) -> Iterator[tuple[int, Parsed]]:
    args = {k.arg: k.value for k in call.keywords if k.arg}
    if call.args and "event" not in args:
        args["event"] = call.args[0]
    offset = args.get("event_off")
    regex = args.get("event_re")
    if regex is not None:
        literal = _string(regex, assigned)
        if literal is None:
            yield offsets.start(regex), _dynamic(regex, "event_re", text, offsets, lines)
            return
        where = lines.location(_literal_start(literal, text, offsets))
        pattern = _text(literal)
        try:
            re.compile(pattern)
        except re.error as exc:
            yield offsets.start(regex), with_origin(ParseProblem(pattern, where, f"bcc cannot compile event_re: {exc}"),
                                                    _BCC)
            return
        yield offsets.start(regex), ProbeSpec(pattern, where, is_return, pattern, None, 0, None, regex=True,
                                              origin=_EACH_MATCH)
        return
    event = args.get("event")
    if event is None:
        return
    name, literal = _event(event, assigned)
    if name is None or literal is None:
        yield offsets.start(event), with_origin(_dynamic(event, "event", text, offsets, lines), origin)
        return
    where = lines.location(_literal_start(literal, text, offsets))
    spec = parse_target(name, where, is_return=is_return)
    if isinstance(offset, ast.Constant) and isinstance(offset.value, int) and isinstance(spec, ProbeSpec):
        if offset.value:  # the literal names only the function: no fix may rewrite it to FN+OFF
            spec = spec._replace(offset=offset.value, text=f"{name}, event_off={offset.value} -> "
                                                           f"{name}+{offset.value:#x}")
    elif offset is not None and isinstance(spec, ProbeSpec):
        yield offsets.start(offset), with_origin(_dynamic(offset, "event_off", text, offsets, lines), origin)
        return
    if isinstance(spec, ProbeSpec) and name != _text(literal):
        spec = spec._replace(text=f"{_text(literal)} -> {name}")
    yield offsets.start(event), with_origin(spec, origin)


def _text(node: ast.Constant) -> str:
    value = node.value
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _string(node: ast.expr, assigned: dict[str, ast.Constant | None]) -> ast.Constant | None:
    """The string literal `node` is, or the only one its variable is assigned."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        return node
    if isinstance(node, ast.Name):
        return assigned.get(node.id)
    return None


def _event(node: ast.expr, assigned: dict[str, ast.Constant | None]) -> tuple[str | None, ast.Constant | None]:
    """The function an ``event=`` argument names, and the literal it comes from."""
    literal = _string(node, assigned)
    if literal is not None:
        return _text(literal), literal
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and len(node.args) == 1
            and node.func.attr in ("get_syscall_fnname", "fix_syscall_fnname")):
        literal = _string(node.args[0], assigned)
        if literal is not None:
            name = _text(literal)
            fixed = SYSCALL_PREFIX + name if node.func.attr == "get_syscall_fnname" else _fix_syscall_fnname(name)
            return fixed, literal
    return None, None


def _dynamic(node: ast.expr, what: str, text: str, offsets: _Offsets, lines: Lines) -> Parsed:
    source = text[offsets.start(node) : offsets.end(node)]
    return with_origin(ParseProblem(source[:80], lines.location(offsets.start(node)),
                                    f"bcc computes {what}= at run time", unsupported=True), _BCC)
