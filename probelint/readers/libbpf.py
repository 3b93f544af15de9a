"""libbpf BPF C (``.bpf.c``): ``SEC("kprobe/FN+OFF")``, ``SEC("kretprobe/FN")``,
``SEC("kprobe.multi/GLOB")`` (``SEC("?kprobe/...")``: not autoloaded unless the loader says so),
and what the user-space loader beside it (``X.c`` for ``X.bpf.c``, bcc libbpf-tools' layout:
`probelint.readers.libbpf_loader`) does to each program:

* attaches it itself (``bpf_program__attach_kprobe[_opts|_multi_opts]``): the loader's targets are
  checked instead of the SEC() name (a bare ``SEC("kprobe")`` names none), each at its string in
  the loader; a target the loader computes at run time is not checked (KP407), at its argument;
* switches its autoload off (``bpf_program__set_autoload(P, false)``) and never on again: libbpf
  neither loads nor attaches it ("not used", KP411);
* either of those under trace_helpers' guards (``if (kprobe_exists("F")) ... else ...``): each
  branch an alternative, as bcc's guarded attaches (`Origin.arm`); guards probelint cannot
  decide (``fentry_can_attach``, ``probe_tp_btf``: BTF and fentry support) leave each branch's
  probes optional.

``bpf_program__set_attach_target`` does not move a kprobe: libbpf's ``attach_kprobe`` reads the
SEC() name (the call only looks the function up in BTF), so the SEC() target is checked as
written, with a note. With no loader beside the file, every SEC() is checked as written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from probelint.errors import InputError
from probelint.fileio import read_regular
from probelint.readers.libbpf_loader import Arm, Call, Loader, read_loader
from probelint.readers.spec import Origin, Parsed, ParseProblem, ProbeSpec, parse_target, with_origin
from probelint.readers.text import Lines

__all__ = ["read"]

_SEC = re.compile(r'SEC\(\s*"(\?)?(kprobe|kretprobe|kprobe\.multi|kretprobe\.multi)(?:/([^"]+))?"\s*\)')
# the program a SEC() heads: `int BPF_KPROBE(NAME, ...)`, `int NAME(struct pt_regs *ctx)`
_NAME = re.compile(r"\s*(?:(?:static|inline|__always_inline|__noinline)\s+)*\w+\s+(?:BPF_\w+\s*\(\s*)?(\w+)")

_LIBBPF = Origin(tool="libbpf")  # through the perf kprobe PMU (or kprobe.multi): trace_kprobe's tests apply
MAX_LOADER = 1 << 20  # bytes: a libbpf-tools loader is tens of KiB

_ATTACH = {"bpf_program__attach_kprobe": 2, "bpf_program__attach_kprobe_opts": 1,
           "bpf_program__attach_kprobe_multi_opts": 1}  # the target's argument
# trace_helpers' tests of the kernel a loader branches on; kprobe_exists is false for a function
# on the kprobe blacklist or missing from available_filter_functions (kallsyms without tracefs)
_HELPERS = {"kprobe_exists": ("KP101", "KP105", "KP106"), "fentry_can_attach": None, "fentry_exists": None,
            "probe_tp_btf": None, "tracepoint_exists": None, "module_btf_exists": None}


def read(text: str, file: str) -> Iterator[Parsed]:
    lines = Lines(file, text)
    loader = _loader(file)
    if isinstance(loader, ParseProblem):
        yield loader
        loader = None
    for m in _SEC.finditer(text):
        name = _NAME.match(text, m.end())
        program = name.group(1) if name else None
        where = lines.location(m.start())
        sec = text[m.start() : m.end()]
        attaches = [c for c in loader.calls if c.program == program and c.function in _ATTACH] if loader else []
        if loader is not None and program is not None and attaches:
            yield from _attached(loader, attaches, program, f"{sec} ({os.path.basename(file)}:{where.line})")
            continue
        if m.group(3) is None:
            continue  # bare SEC("kprobe"): libbpf attaches nothing by itself
        origin = _autoload(loader, program, m.group(1) is not None, m.group(3)) if loader and program else _LIBBPF
        spec = parse_target(m.group(3), lines.location(m.start(3)), is_return=m.group(2).startswith("kretprobe"),
                            allow_glob=m.group(2).endswith(".multi"))
        yield with_origin(spec, origin)


def _loader(file: str) -> Loader | ParseProblem | None:
    """The loader beside a ``X.bpf.c`` (``X.c``), None where there is none."""
    if not file.endswith(".bpf.c"):
        return None
    path = file.removesuffix(".bpf.c") + ".c"
    if not os.path.lexists(path):
        return None
    try:
        text = read_regular(path, MAX_LOADER, "a libbpf loader").decode(errors="replace")
    except InputError as exc:
        return with_origin(ParseProblem(os.path.basename(path), Lines(file, "").location(0),
                                        f"the libbpf loader beside it is not read: {exc.detail}; its SEC() "
                                        "targets are checked as written", unsupported=True), _LIBBPF)
    return read_loader(path, text)


def _where(loader: Loader, offset: int) -> str:
    return f"{os.path.basename(loader.file)}:{Lines(loader.file, loader.text).location(offset).line}"


def _attached(loader: Loader, calls: list[Call], program: str, sec: str) -> Iterator[Parsed]:
    """The loader's own attaches of one program, each at its target argument."""
    lines = Lines(loader.file, loader.text)
    for call in calls:
        index = _ATTACH[call.function]
        if index >= len(call.args):
            continue
        note = f"its loader attaches program {program} here ({call.function}), not at {sec}"
        origin = _arm_origin(loader, call.arm, _target(loader, call), "attached", note)
        literal = loader.literal(call, index)
        if literal is None:  # KP407, but still the tool's: optional where its branch is
            yield with_origin(ParseProblem(loader.arg(call, index)[:80], lines.location(call.args[index][0]),
                                           f"libbpf's loader computes the {call.function} target at run time",
                                           unsupported=True), origin)
            continue
        target, at = literal
        multi = call.function.endswith("_multi_opts")
        spec = parse_target(target, lines.location(at), is_return=_retprobe(loader, call), allow_glob=multi)
        if isinstance(spec, ProbeSpec) and multi and spec.is_glob:
            spec = spec._replace(origin=origin)
        yield with_origin(spec, origin)


def _target(loader: Loader, call: Call) -> str | None:
    literal = loader.literal(call, _ATTACH[call.function])
    return literal[0] if literal else None


def _retprobe(loader: Loader, call: Call) -> bool:
    """A return probe: `retprobe` of bpf_program__attach_kprobe, else ``.retprobe = true`` of
    the opts it passes (set where it is declared or assigned in the loader)."""
    if call.function == "bpf_program__attach_kprobe":
        return loader.flag(call, 1) is True
    if len(call.args) < 3:
        return False
    opts = re.fullmatch(r"&?\s*(\w+)", loader.arg(call, 2))
    if opts is None:
        return False
    name = re.escape(opts.group(1))
    declared = re.search(rf"\b(?:LIBBPF_OPTS|DECLARE_LIBBPF_OPTS)\s*\(\s*\w+\s*,\s*{name}\b[^;]*?\.retprobe\s*=\s*"
                         rf"(true|1)\b|\b{name}\.retprobe\s*=\s*(true|1)\b", loader.text)
    return declared is not None


def _guarding(loader: Loader, arm: Arm | None) -> list[Arm] | None:
    """The branches of the chain `arm` is in, where the chain tests the kernel with trace_helpers
    (None: not in such a chain: what it does is done on every kernel)."""
    if arm is None:
        return None
    chain = [a for a in loader.arms if a.chain == arm.chain]
    return chain if any(a.guard and a.guard[1] in _HELPERS for a in chain) else None


def _why(loader: Loader, arm: Arm, chain: list[Arm], verb: str) -> str:
    if arm.condition:
        return f"{verb} only where `{arm.condition[:80]}` holds, {os.path.basename(loader.file)}:{arm.line}"
    return f"{verb} only where `{chain[0].condition[:80]}` does not hold, {os.path.basename(loader.file)}:{arm.line}"


def _arm_origin(loader: Loader, arm: Arm | None, target: str | None, verb: str, note: str | None) -> Origin:
    """The origin of a probe the loader uses in branch `arm` (None: on every kernel). The
    branches of a chain whose guards are all `kprobe_exists` (and an else) are alternatives: a
    probe of the guard's function decides its branch, as bcc's guarded attaches do; other
    guards leave the probe optional."""
    chain = _guarding(loader, arm)
    if chain is None or arm is None:
        return _LIBBPF._replace(loader=note)
    why = _why(loader, arm, chain, verb)
    modelled = all((a.guard is None and not a.condition) or (a.guard and not a.negated and _HELPERS.get(a.guard[1]))
                   for a in chain)
    if not modelled:
        return _LIBBPF._replace(optional=why, loader=note)
    decided_by = _HELPERS[arm.guard[1]] if arm.guard else ("KP101",)
    return _LIBBPF._replace(optional=why if arm.condition else None, alternatives=arm.chain, arm=arm.index,
                            sufficient=arm.guard is not None and target == arm.guard[0], decided_by=decided_by or (),
                            loader=note)


def _gives_up(loader: Loader, arm: Arm) -> bool:
    """A branch where the loader stops (``return``, ``goto``, ``exit()``) without touching a
    program: it loads nothing (slabtop's "function not found" else)."""
    body = loader.text[arm.start : arm.end]
    return (re.search(r"\b(?:return|goto|exit\s*\()", body) is not None
            and not any(arm.start <= c.start < arm.end for c in loader.calls))


def _autoload(loader: Loader, program: str, off: bool, target: str) -> Origin:
    """The origin of a program libbpf attaches by its SEC() name, by what the loader does to
    its autoload (`off`: ``SEC("?...")``, not autoloaded unless switched on)."""
    calls = [c for c in loader.calls if c.program == program]
    moved = [c for c in calls if c.function == "bpf_program__set_attach_target"]
    note = (f"the loader's bpf_program__set_attach_target at {_where(loader, moved[0].start)} does not move a "
            "kprobe: libbpf attaches it by its SEC() name") if moved else None
    switches = [c for c in calls if c.function == "bpf_program__set_autoload" and len(c.args) >= 2]
    plain = [c for c in switches if _guarding(loader, c.arm) is None]
    guarded = [c for c in switches if c not in plain]
    state: bool | None = not off
    for call in plain:  # in file order: the last one written wins
        state = loader.flag(call, 1)
    last = plain[-1] if plain else None
    if not guarded:
        if state is False:
            where = f"switched off at {_where(loader, last.start)}" if last else "off (SEC(\"?...\"))"
            return _LIBBPF._replace(unused=f"its autoload is {where} and never switched on: libbpf neither loads nor "
                                           "attaches it", loader=note)
        if state is None and last is not None:
            return _LIBBPF._replace(optional=f"loaded only where `{loader.arg(last, 1)[:80]}` holds, "
                                             f"{_where(loader, last.start)}", loader=note)
        return _LIBBPF._replace(loader=note)
    chains = {c.arm.chain for c in guarded if c.arm}
    chain = [a for a in loader.arms if a.chain in chains]
    set_in = {c.arm: loader.flag(c, 1) for c in guarded if c.arm}
    live = [a for a in chain if set_in.get(a, state) and not _gives_up(loader, a)]
    if len(chains) == 1 and None not in set_in.values() and state is not None and len(live) == 1:
        return _arm_origin(loader, live[0], target, "loaded", note)
    if not live:
        return _LIBBPF._replace(unused="its autoload is switched off in every branch of the loader at "
                                       f"{_where(loader, chain[0].chain)}: libbpf neither loads nor attaches it",
                                loader=note)
    return _LIBBPF._replace(optional=f"loaded only where the loader's tests at {_where(loader, chain[0].chain)} "
                                     "choose it", loader=note)
