"""Probes where users keep them: bpftrace scripts, libbpf BPF C, shell scripts, probe lists.

Each extractor finds the probe points in a file and parses them with the kprobe_events grammar
(`probelint.readers.spec.parse_target`), keeping the file, line and column of the probe token itself:

* bpftrace (``.bt``, or a ``bpftrace`` shebang): ``kprobe:[MOD:]FN[+OFF]``, ``kretprobe:...``,
  ``k:``/``kr:``, several probes before one block, wildcards (expanded later against the kernel);
* libbpf (``.bpf.c``): ``SEC("kprobe/FN+OFF")``, ``SEC("kretprobe/FN")``, ``SEC("kprobe.multi/GLOB")``;
* shell (``.sh``, or a sh/bash shebang): ``echo 'p:... TARGET' >> .../kprobe_events``,
  ``perf probe [-m MOD] [-a] [EVENT=]FUNC[+OFF|%return]`` and ``bpftrace -e '...'`` one-liners;
  perf's source-line forms (``FILE:LINE``, ``FUNC:RLN``, ``FUNC@FILE[:RLN|+OFF]``) become a
  `SourceLineProbe`, resolved against the kernel's DWARF by `probelint.resolve.resolve_source_lines`
  (`probelint.image.dwarf_lines`) into one probe per address perf would probe;
* SystemTap (``.stp``, or a stap shebang): ``kprobe.function``, ``kernel.function("F")[.return]``,
  ``kernel.statement("[F@]FILE:LINE")`` (`_systemtap`);
* anything else: a probe list, one probe per line (`probelint.readers.spec.parse_text`).

Not covered yet: perf's lazy patterns (``FUNC;PTN``) and source lines in modules.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from probelint.findings import Location
from probelint.readers.spec import ParseProblem, PerfPoint, ProbeSpec, parse_line, parse_target, parse_text

__all__ = ["KINDS", "SourceLineProbe", "detect_kind", "extract", "tree_files"]

KINDS = ("list", "bpftrace", "libbpf", "shell", "systemtap")


class SourceLineProbe(NamedTuple):
    """A probe point placed through the kernel's DWARF (perf's source lines and functions,
    SystemTap's ``kernel.function`` and ``kernel.statement``): resolved with perf's model."""

    text: str  # the probe token as written
    location: Location
    point: PerfPoint
    tool: str = "perf"  # whose probe it is, for the messages


Parsed = ProbeSpec | ParseProblem | SourceLineProbe

# SystemTap 4.8's own blocklist of kernel functions (tapsets.cxx, printed by `stap -vvv -p2`):
# a kernel.function probe on one of them fails with "semantic error: no match".
_STAP_BLOCKLIST = re.compile(
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
_STAP_BLOCKLIST_RETURN = re.compile(r"do_exit|sys_exit|sys_exit_group")

_BPFTRACE_PROBE = re.compile(r"(?<![\w$@])(kprobe|kretprobe|kr|k):([A-Za-z_][\w.*?\[\]]*(?::[A-Za-z_*?\[][\w.*?\[\]]*)?"
                             r"(?:\+(?:0[xX][0-9a-fA-F]+|[0-9]+))?)")
_LIBBPF_SEC = re.compile(r'SEC\(\s*"(kprobe|kretprobe|kprobe\.multi|kretprobe\.multi)/([^"]+)"\s*\)')
_KPROBE_EVENTS_ECHO = re.compile(r"""echo\s+(?:-\w+\s+)*(['"])([pr][^'"]*)\1\s*>>?\s*\S*kprobe_events""")
_PERF_PROBE = re.compile(r"""\bperf\s+probe\b((?:'[^'\n]*'|"[^"\n]*"|[^\n;|&'"])*)""")
_STAP_PROBE = re.compile(r"""\b(kprobe\.function|kernel\.function|kernel\.statement)\(\s*"([^"]*)"\s*\)((?:\.\w+)*)""")
_STAP_MODULE = re.compile(r"""\b(?:kprobe\.)?module\(\s*"[^"]*"\s*\)\.(?:function|statement)\(\s*"([^"]*)"\s*\)""")
_STAP_COMMENT = re.compile(r'"(?:\\.|[^"\\\n])*"|#[^\n]*|//[^\n]*|/\*.*?\*/', re.S)
_BPFTRACE_E = re.compile(r"""\bbpftrace\b[^\n]*?\s-e\s+(['"])(.*?)\1""", re.S)


def detect_kind(path: str, text: str) -> str:
    first = text.split("\n", 1)[0]
    if path.endswith(".bt") or (first.startswith("#!") and "bpftrace" in first):
        return "bpftrace"
    if path.endswith(".bpf.c"):
        return "libbpf"
    if path.endswith(".stp") or (first.startswith("#!") and "stap" in first):
        return "systemtap"
    if path.endswith((".sh", ".bash")) or (first.startswith("#!") and re.search(r"\b(ba|da|z|k)?sh\b", first)):
        return "shell"
    return "list"


def _location(file: str, text: str, offset: int) -> Location:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Location(file, line, column)


def _blank(match: re.Match[str]) -> str:
    return re.sub(r"[^\n]", " ", match.group())


def _code_only(text: str) -> str:
    """Comments and string literals blanked out, positions kept."""
    return re.sub(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"', _blank, text, flags=re.S)


def _bpftrace(text: str, file: str, base: int = 0, whole: str | None = None) -> list[Parsed]:
    """Probes of a bpftrace program: headers at brace depth 0."""
    whole = text if whole is None else whole
    code = _code_only(text)
    depth_at, depth = [], 0
    for ch in code:
        depth_at.append(depth)
        depth += (ch == "{") - (ch == "}")
    out: list[Parsed] = []
    for m in _BPFTRACE_PROBE.finditer(code):
        if depth_at[m.start()] != 0:
            continue
        where = _location(file, whole, base + m.start(2))
        out.append(parse_target(m.group(2), where, is_return=m.group(1) in ("kretprobe", "kr"), allow_glob=True))
    return out


def _libbpf(text: str, file: str) -> list[Parsed]:
    out: list[Parsed] = []
    for m in _LIBBPF_SEC.finditer(text):
        where = _location(file, text, m.start(2))
        multi = m.group(1).endswith(".multi")
        out.append(parse_target(m.group(2), where, is_return=m.group(1).startswith("kretprobe"), allow_glob=multi))
    return out


def _shell_words(args: str, offset: int) -> list[tuple[str, list[int]]]:
    """Shell words with their quotes removed, each character with its offset in the file."""
    words: list[tuple[str, list[int]]] = []
    for m in re.finditer(r"""(?:'[^']*'|"[^"]*"|[^\s'"])+""", args):
        chars: list[str] = []
        where: list[int] = []
        for part in re.finditer(r"""'([^']*)'|"([^"]*)"|([^'"]+)""", m.group()):
            group = next(g for g in (1, 2, 3) if part.group(g) is not None)
            chars.append(part.group(group))
            where.extend(range(offset + m.start() + part.start(group), offset + m.start() + part.end(group)))
        words.append(("".join(chars), where))
    return words


# builtin-probe.c options that take a value (-x/--exec: user-space probes; -d/-L/-V: other commands)
_PERF_VALUE = {"-a": "add", "--add": "add", "-D": "add", "--definition": "add", "-m": "module",
               "--module": "module", "-x": "exec", "--exec": "exec", "-d": "other", "--del": "other",
               "-L": "other", "--line": "other", "-V": "other", "--vars": "other", "-k": "", "--vmlinux": "",
               "-s": "", "--source": "", "--max-probes": "", "--symfs": "", "--target-ns": "", "--filter": ""}
# commands whose value is optional (only as -lVALUE / --list=VALUE): they add no probe
_PERF_OTHER = {"-l", "--list", "-F", "--funcs"}


def _perf_probe(args: str, offset: int, text: str, file: str) -> list[Parsed]:
    """The probes one `perf probe` command adds, parsed as builtin-probe.c does: each -a/-D value
    is a probe, and the words after the last option (PARSE_OPT_STOP_AT_NON_OPTION) are one more,
    joined (`parse_probe_event_argv`): its first word is the point, the rest are fetchargs."""
    words = _shell_words(args, offset)
    specs: list[tuple[str, int]] = []
    module: str | None = None
    other = False
    i = 0
    while i < len(words):
        word, where = words[i]
        if not word.startswith("-") or word == "-":
            specs.append((word, where[0] if where else offset))  # the rest is this probe's fetchargs
            break
        name, eq, value = word.partition("=")
        attached = eq != "" or (not word.startswith("--") and len(word) > 2)
        if not eq and attached:
            name, value = word[:2], word[2:]
        start = where[len(name) + len(eq)] if attached and value else None
        kind = _PERF_VALUE.get(name)
        if kind is not None and not attached:
            i += 1
            value, vwhere = words[i] if i < len(words) else ("", [])
            start = vwhere[0] if vwhere else None
        if kind == "add" and value:
            specs.append((value, start if start is not None else offset))
        elif kind == "module":
            module = value
        elif kind in ("exec", "other") or name in _PERF_OTHER:
            other = True
        i += 1
    if other:  # another command, or user-space probes: nothing for the kernel to register
        return []
    return [_perf_point(spec.split()[0], _location(file, text, start), module) for spec, start in specs if spec.split()]


def _perf_point(probe: str, where: Location, module: str | None) -> Parsed:
    """One `perf probe` point (tools/perf/util/probe-event.c `parse_perf_probe_point`):
    ``[[GRP:]EVENT=]FUNC[@SRC][+OFF|%return|:RLN|;PTN]`` or ``[[GRP:]EVENT=]SRC[:ALN|;PTN]``."""
    head = re.match(r"[^;@+%=]*=", probe)
    body = probe[head.end() :] if head else probe
    # a file spec: none of "+@%", and a '.' before the first ':' or ';'
    cut = re.search(r"[;:]", body)
    file_spec = not re.search(r"[+@%]", body) and cut is not None and "." in body[: cut.start()]
    if ";" in body:
        return ParseProblem(probe, where, "perf lazy-pattern probe (;PTN) is not checked yet", unsupported=True)
    parts = re.split(r"([:+@%])", body)
    name, fields = parts[0], dict(zip(parts[1::2], parts[2::2], strict=True))
    if not re.search(r"[:@]", body):
        return parse_target(f"{module}:{body}" if module else body, where)
    if "%" in fields:  # perf finds return probes through the symbol table, without DWARF
        if ":" in fields or "+" in fields or file_spec:
            return ParseProblem(probe, where, "perf: %return takes a function name alone")
        return parse_target(f"{module}:{name}%{fields['%']}" if module else f"{name}%{fields['%']}", where)
    if module:
        return ParseProblem(probe, where, "perf source-line probe in a module: not checked yet", unsupported=True)
    try:
        line = int(fields[":"], 0) if ":" in fields else 0
        offset = int(fields["+"], 0) if "+" in fields else 0
    except ValueError:
        return ParseProblem(probe, where, "perf: line number and offset must be numbers")
    if file_spec:
        point = PerfPoint(None, name, line)
    elif not name or ("@" in fields and not fields["@"]):
        return ParseProblem(probe, where, "perf: no function or file name")
    else:
        point = PerfPoint(name, fields.get("@"), line, offset)
    return SourceLineProbe(probe, where, point)


def _systemtap(text: str, file: str) -> list[Parsed]:
    """SystemTap probe points (``probe POINT[, POINT] { ... }``):

    * ``kprobe.function("F")`` is a plain kprobe at F (``.return``: a kretprobe), wildcards
      expanded like bpftrace's;
    * ``kernel.function("F").return`` is a kretprobe at F's entry;
    * ``kernel.statement("FILE:LINE")``, ``("F@FILE:LINE")``: the address of that line, resolved
      through DWARF with perf's model (`probelint.image.dwarf_lines`); F only names the function;
    * ``kernel.function("F[@FILE]")`` (entry): F's out-of-line entry and the entries of its
      inlined copies, placed with perf's model of ``F[@FILE]`` keeping the copies perf drops as
      redundant (stap 4.8 searches prologues only in unoptimized code; 23 of 23 sampled functions
      give the same set of addresses as ``stap -p2``); ``.call``/``.inline``, lines and wildcards
      in F, and ``.statement`` forms with wildcards or ranges are not checked (KP407);
    * names on stap's own blocklist are refused as stap refuses them (KP001)."""
    # comments blanked; string literals kept whole (a '#' in one starts no comment)
    code = _STAP_COMMENT.sub(lambda m: m.group() if m.group().startswith('"') else _blank(m), text)
    found: list[tuple[int, Parsed]] = []
    for m in _STAP_MODULE.finditer(code):
        found.append((m.start(1), ParseProblem(m.group(1), _location(file, text, m.start(1)),
                                               "SystemTap module(...) probes are not checked", unsupported=True)))
    out: list[Parsed] = []
    starts: list[int] = []  # each iteration adds one item to out
    for m in _STAP_PROBE.finditer(code):
        starts.append(m.start(2))
        kind, arg, suffix = m.group(1), text[m.start(2) : m.end(2)], m.group(3)
        where = _location(file, text, m.start(2))
        is_return = suffix == ".return"
        if suffix not in ("", ".return") or (kind == "kernel.statement" and suffix):
            out.append(ParseProblem(arg, where, f"SystemTap {kind}{suffix} is not checked", unsupported=True))
        elif kind == "kprobe.function":
            out.append(parse_target(arg, where, is_return=is_return, allow_glob=True))
        elif kind == "kernel.function":
            out.append(_stap_function(arg, where, is_return))
        else:
            statement = re.fullmatch(r"(?:([A-Za-z_]\w*)@)?([\w./-]+):([0-9]+)", arg)
            if statement is None:
                out.append(ParseProblem(arg, where, "SystemTap statement with wildcards or ranges is not checked",
                                        unsupported=True))
                continue
            out.append(SourceLineProbe(arg, where, PerfPoint(None, statement.group(2), int(statement.group(3)))))
    found += zip(starts, out, strict=True)
    return [p for _, p in sorted(found, key=lambda f: f[0])]


def _stap_function(arg: str, where: Location, is_return: bool) -> Parsed:
    """``kernel.function("F[@FILE]")[.return]``. SystemTap 4.8 puts the entry probe of an
    optimized kernel's function at its entry address (the prologue search is for unoptimized
    code) and adds one at the entry of each copy inlined into other functions: the places perf's
    model gives ``F[@FILE]``. The return probe is a kretprobe on the entry."""
    named = re.fullmatch(r"([A-Za-z_]\w*)(?:@([\w./-]+))?", arg)
    function = named.group(1) if named else None
    blocklist = _STAP_BLOCKLIST_RETURN if is_return else _STAP_BLOCKLIST
    if function and (blocklist.fullmatch(function) or (is_return and _STAP_BLOCKLIST.fullmatch(function))):
        return ParseProblem(arg, where, f"SystemTap refuses {function}: it is on its own blocklist of kernel "
                                        f"functions (stap: \"semantic error: no match\")")
    if is_return and "@" not in arg and ":" not in arg:
        return parse_target(arg, where, is_return=True, allow_glob=True)
    if named is None or is_return:
        return ParseProblem(arg, where, "SystemTap kernel.function with a line, wildcard or file and .return is not "
                                        "checked", unsupported=True)
    return SourceLineProbe(arg, where, PerfPoint(function, named.group(2), 0, 0, every_instance=True),
                           tool="systemtap")


def _shell(text: str, file: str) -> list[Parsed]:
    found: list[tuple[int, list[Parsed]]] = []
    for m in _KPROBE_EVENTS_ECHO.finditer(text):
        line_no = text.count("\n", 0, m.start(2)) + 1
        column0 = m.start(2) - (text.rfind("\n", 0, m.start(2)) + 1)
        parsed = parse_line(" " * column0 + m.group(2), file, line_no)
        if parsed is not None:
            found.append((m.start(), [parsed]))
    for m in _PERF_PROBE.finditer(text):
        found.append((m.start(), _perf_probe(m.group(1), m.start(1), text, file)))
    for m in _BPFTRACE_E.finditer(text):
        found.append((m.start(), _bpftrace(m.group(2), file, m.start(2), text)))
    return [p for _, group in sorted(found, key=lambda f: f[0]) for p in group]


def extract(path: str, text: str, kind: str | None = None) -> list[Parsed]:
    """The probes of one file, in file order."""
    kind = kind or detect_kind(path, text)
    if kind == "bpftrace":
        return _bpftrace(text, path)
    if kind == "libbpf":
        return _libbpf(text, path)
    if kind == "shell":
        return _shell(text, path)
    if kind == "systemtap":
        return _systemtap(text, path)
    return list(parse_text(text, path))


def tree_files(root: Path) -> list[Path]:
    """The files of a tree that hold probes: by extension, or a bpftrace shebang."""
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        name = path.name
        if name.endswith((".bt", ".bpf.c", ".sh", ".bash", ".stp", ".kprobes")) or name.endswith("probes.txt"):
            out.append(path)
    return out
