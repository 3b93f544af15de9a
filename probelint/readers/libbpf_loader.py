"""The user-space loader of a libbpf program (bcc libbpf-tools' ``X.c`` beside ``X.bpf.c``), read
as C text for what it does to the kprobe programs of its skeleton (``obj->progs.NAME``):

* ``bpf_program__attach_kprobe(P, RETPROBE, "F")``, ``bpf_program__attach_kprobe_opts(P, "F", &opts)``
  (``opts.retprobe``), ``bpf_program__attach_kprobe_multi_opts(P, "GLOB", &opts)``: the loader
  attaches P itself, to F;
* ``bpf_program__set_autoload(P, false)`` (or ``true``, or a run-time value): whether libbpf
  loads, and the skeleton attaches, P;
* ``bpf_program__set_attach_target(P, 0, "F")``: kept, to say it does not move a kprobe (libbpf's
  ``attach_kprobe`` reads the SEC() name; the call only looks F up in BTF);
* the ``if``/``else if``/``else`` chain each call is in, with its guard where it is one of
  trace_helpers' tests (``kprobe_exists("F")``, ``fentry_can_attach("F", ...)``,
  ``probe_tp_btf("F")``, ...).

Nothing else of C is modelled: calls in helper functions count where they are written, not
where they are called; a loop or a ``switch`` is not a condition.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Arm", "Call", "Loader", "read_loader"]

_TOKENS = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|//[^\n]*|/\*.*?\*/', re.S)
_CALL = re.compile(r"\b(bpf_program__(?:attach_kprobe(?:_opts|_multi_opts)?|set_autoload|set_attach_target))\s*\(")
_PROGRAM = re.compile(r"\s*\(?\s*[\w.>\-]*?\bprogs\.(\w+)\s*\)?\s*")
_GUARD = re.compile(r'\s*(!\s*)?(\w+)\s*\(\s*"([\w.]+)"\s*(?:,[^()]*)?\)\s*')
_STRING = re.compile(r'\s*"([^"\\]*)"\s*')


class Arm(NamedTuple):
    """One branch of an if/else chain: the `index`th of the chain at offset `chain`."""

    chain: int
    index: int
    start: int  # the branch's body
    end: int
    condition: str  # as written ("" for an else, or the implicit else of a chain without one)
    line: int  # of the condition (of the chain's `if` for an else)
    negated: bool
    guard: tuple[str, str] | None  # (function, helper): `kprobe_exists("F")` -> ("F", "kprobe_exists")


class Call(NamedTuple):
    function: str  # bpf_program__...
    program: str | None  # NAME of obj->progs.NAME (None: a variable)
    args: tuple[tuple[int, int], ...]  # offsets of each argument in the text
    start: int
    arm: Arm | None  # the innermost branch the call is in


class Loader(NamedTuple):
    file: str
    text: str
    calls: tuple[Call, ...]
    arms: tuple[Arm, ...]

    def literal(self, call: Call, index: int) -> tuple[str, int] | None:
        """The string literal argument `index` of `call` is, with the offset of its first character."""
        start, end = call.args[index]
        m = _STRING.fullmatch(self.text, start, end)
        return (m.group(1), m.start(1)) if m else None

    def flag(self, call: Call, index: int) -> bool | None:
        """A true/false argument (None: decided at run time)."""
        value = self.arg(call, index)
        return True if value in ("true", "1") else False if value in ("false", "0") else None

    def arg(self, call: Call, index: int) -> str:
        start, end = call.args[index]
        return " ".join(self.text[start:end].split())


def _blank_code(text: str) -> str:
    """`text` with comments and the insides of string and character literals as spaces (the
    quotes kept): parentheses and commas left are the code's own."""

    def blank(m: re.Match[str]) -> str:
        body = m.group()
        if body[0] in "\"'":
            return body[0] + re.sub(r"[^\n]", " ", body[1:-1]) + body[-1]
        return re.sub(r"[^\n]", " ", body)

    return _TOKENS.sub(blank, text)


def _close(code: str, start: int, opening: str, closing: str) -> int:
    """Offset just past the bracket matching the one at `start` (the end of the text if none)."""
    depth = 0
    for i in range(start, len(code)):
        if code[i] == opening:
            depth += 1
        elif code[i] == closing:
            depth -= 1
            if depth == 0:
                return i + 1
    return len(code)


def _statement(code: str, start: int) -> int:
    """Offset past the statement at `start`: a braced block, or up to its `;` (an `if` without
    braces inside it ends at its first `;`: not modelled further)."""
    at = len(code) - len(code[start:].lstrip())
    if at < len(code) and code[at] == "{":
        return _close(code, at, "{", "}")
    depth = 0
    for i in range(at, len(code)):
        depth += code[i] == "("
        depth -= code[i] == ")"
        if code[i] == ";" and depth <= 0:
            return i + 1
    return len(code)


_IF = re.compile(r"\bif\s*\(")
_ELSE = re.compile(r"\s*else\b")


def _arms(text: str, code: str) -> list[Arm]:
    """The branches of every if/else chain, an implicit empty else for a chain without one."""
    out: list[Arm] = []
    elifs: set[int] = set()
    for m in _IF.finditer(code):
        if m.start() in elifs:
            continue
        chain, index, at = m.start(), 0, m
        first_line = text.count("\n", 0, chain) + 1
        while True:
            cond_end = _close(code, at.end() - 1, "(", ")")
            condition = text[at.end() : cond_end - 1]
            body_end = _statement(code, cond_end)
            g = _GUARD.fullmatch(condition)
            out.append(Arm(chain, index, cond_end, body_end, " ".join(condition.split()),
                           text.count("\n", 0, at.start()) + 1, bool(g and g.group(1)),
                           (g.group(3), g.group(2)) if g else None))
            index += 1
            e = _ELSE.match(code, body_end)
            if e is None:
                out.append(Arm(chain, index, body_end, body_end, "", first_line, False, None))
                break
            nxt = _IF.match(code, len(code) - len(code[e.end():].lstrip()))
            if nxt is None:
                out.append(Arm(chain, index, e.end(), _statement(code, e.end()), "", first_line, False, None))
                break
            elifs.add(nxt.start())
            at = nxt
    return out


def _args(code: str, open_paren: int) -> tuple[tuple[int, int], ...]:
    """Offsets of the arguments of the call whose `(` is at `open_paren`."""
    out, depth, start = [], 0, open_paren + 1
    for i in range(open_paren, len(code)):
        c = code[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                out.append((start, i))
                break
        elif c == "," and depth == 1:
            out.append((start, i))
            start = i + 1
    return tuple(out)


def read_loader(file: str, text: str) -> Loader:
    code = _blank_code(text)
    arms = _arms(text, code)
    calls = []
    for m in _CALL.finditer(code):
        args = _args(code, m.end() - 1)
        if not args:
            continue
        program = _PROGRAM.fullmatch(code, *args[0])
        inside = [a for a in arms if a.start <= m.start() < a.end]
        arm = min(inside, key=lambda a: a.end - a.start) if inside else None
        calls.append(Call(m.group(1), program.group(1) if program else None, args, m.start(), arm))
    return Loader(file, text, tuple(calls), tuple(arms))
