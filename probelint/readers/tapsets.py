"""SystemTap's installed tapsets as a table of probe aliases (``probe NAME = POINT [?|!], ... { }``),
read as stap 4.8 reads them for an x86_64 kernel: comments and embedded C dropped, ``%( COND %?
A %: B %)`` decided where COND names the architecture, the runtime or stap's version, and
``@define`` macros (``@arch_syscall_prefix``) substituted. A condition on the kernel's version or
configuration is left undecided: the aliases it defines, and the points it chooses between, are
reported as not checked rather than guessed.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from probelint import fileio
from probelint.errors import InputError

__all__ = ["UNDECIDED", "Alias", "Tapsets", "load", "tapset_root"]

ARCH = "x86_64"  # probelint reads x86-64 kernels only
# what stap 4.8 answers for the conditions probelint can decide (session.cxx: the compatible version
# defaults to stap's own; the runtime is "kernel" unless --runtime); CONFIG_64BIT holds on x86_64
_KNOWN = {"arch": ARCH, "runtime": "kernel", "systemtap_v": "4.8", "CONFIG_64BIT": "y"}
UNDECIDED = "@probelint_undecided"  # stands where an undecided condition chooses between points
_MAX_FILE = 4 << 20
_MAX_DEPTH = 32  # aliases of aliases: stap's tapsets nest 4 deep


class Alias(NamedTuple):
    """One definition of an alias: its points, each with its ``?``/``!`` flag ("" for none)."""

    points: tuple[tuple[str, str], ...]
    file: str
    undecided: str | None = None  # the condition on the kernel it is defined under, if any


class Tapsets(NamedTuple):
    root: str
    aliases: dict[str, list[Alias]]  # by name, in the order stap reads the files


def tapset_root() -> Path:
    """The tapset directory stap reads (its SYSTEMTAP_TAPSET overrides the installed one)."""
    return Path(os.environ.get("SYSTEMTAP_TAPSET") or "/usr/share/systemtap/tapset")


def load(root: Path) -> Tapsets | None:
    """The aliases the tapsets under `root` define; None where there are none installed."""
    if not root.is_dir():
        return None
    # listed for every SystemTap file read, as strings: Path objects' sorting and two stats per
    # file were a second of a run over SystemTap's examples
    stamp: list[tuple[str, int]] = []
    for directory in (str(root), f"{root}/linux", f"{root}/linux/{ARCH}", f"{root}/{ARCH}"):
        try:
            with os.scandir(directory) as listing:
                entries = sorted((e for e in listing if e.name.endswith((".stp", ".stpm"))), key=lambda e: e.name)
                stamp += ((e.path, e.stat().st_mtime_ns) for e in entries if e.is_file())
        except OSError:
            continue  # absent, or not a directory
    return _load(str(root), tuple(stamp)) if stamp else None


@lru_cache(maxsize=4)
def _load(root: str, stamp: tuple[tuple[str, int], ...]) -> Tapsets:
    texts: list[tuple[str, str]] = []
    macros: dict[str, str] = {}
    for name, _ in stamp:
        try:
            raw = fileio.read_regular(name, _MAX_FILE, "tapset").decode("utf-8", "replace")
        except (OSError, InputError):
            continue  # stap skips what it cannot read too
        code = _preprocess(_strip(raw), macros)
        if name.endswith(".stp"):
            texts.append((name, code))
    aliases: dict[str, list[Alias]] = {}
    for name, code in texts:
        for defined, points, undecided in _definitions(code):
            points = tuple((_expand_macros(p, macros), f) for p, f in points)
            for alias in defined:
                aliases.setdefault(alias, []).append(Alias(points, name, undecided))
    return Tapsets(root, aliases)


# comments and embedded C (%{ ... %}) dropped; strings kept whole (a '#' in one starts nothing)
_NOISE = re.compile(r'"(?:\\.|[^"\\\n])*"|%\{.*?(?:%\}|\Z)|#[^\n]*|//[^\n]*|/\*.*?(?:\*/|\Z)', re.S)


def _strip(text: str) -> str:
    return _NOISE.sub(lambda m: m.group() if m.group().startswith('"') else " ", text)


_PP = re.compile(r'"(?:\\.|[^"\\\n])*"|%\(|%\?|%:|%\)|@define\s+(\w+)(?:\s*\([^)]*\))?\s*%\(')


def _preprocess(code: str, macros: dict[str, str]) -> str:
    """`code` with its conditionals decided and its ``@define``s recorded in `macros` (and removed).
    An undecided conditional is kept as ``%(COND%?A%:B%)`` for `_definitions` to read both ways."""
    out, _ = _pp(code, 0, macros, top=True)
    return out


def _pp(code: str, i: int, macros: dict[str, str], top: bool) -> tuple[str, int]:
    """Preprocess from `i` to the ``%)``/``%?``/``%:`` that ends this level (or the end)."""
    out: list[str] = []
    while True:
        m = _PP.search(code, i)
        if m is None:
            out.append(code[i:])
            return "".join(out), len(code)
        token = m.group()
        out.append(code[i : m.start()])
        i = m.end()
        if token.startswith('"'):
            out.append(token)
        elif token.startswith("@define"):
            body, i = _pp(code, i, macros, top=False)
            i = _skip_to_close(code, i, macros)
            macros[m.group(1)] = body.strip()
        elif token == "%(":
            cond, i = _pp(code, i, macros, top=False)
            then_macros: dict[str, str] = {}
            other_macros: dict[str, str] = {}
            then, i = _pp(code, i, then_macros, top=False)
            other = ""
            if code[i - 2 : i] == "%:":
                other, i = _pp(code, i, other_macros, top=False)
            verdict = _decide(cond)
            # a branch's @defines hold only where it is taken (each arch defines its own prefix)
            macros.update(then_macros if verdict else other_macros if verdict is False else {})
            out.append(then if verdict else other if verdict is False else f"%({cond}%?{then}%:{other}%)")
        elif not top:
            return "".join(out), i
        # a stray %? %: %) at the top is stap's parse error: dropped


def _skip_to_close(code: str, i: int, macros: dict[str, str]) -> int:
    """After a macro body that ended at a %? or %: (none do in the tapsets): to its %)."""
    while code[i - 2 : i] in ("%?", "%:"):
        _, i = _pp(code, i, macros, top=False)
    return i


_COND_TOKEN = re.compile(r'\s*("(?:\\.|[^"\\])*"|[A-Za-z_@][\w]*|==|!=|<=|>=|<|>|&&|\|\||[()!]|-?\d+)')


def _decide(cond: str) -> bool | None:
    """True/False where `cond` is decided by what probelint knows, None where it needs the kernel's
    version or configuration (or is an expression it does not read)."""
    tokens = [t for t in _COND_TOKEN.findall(cond)]
    if "".join(tokens).replace(" ", "") != re.sub(r"\s", "", cond):
        return None
    try:
        value, rest = _or(tokens)
    except (IndexError, ValueError):
        return None
    return value if not rest else None


def _or(t: list[str]) -> tuple[bool | None, list[str]]:
    return _chain(t, "||", _and, absorbing=True)


def _and(t: list[str]) -> tuple[bool | None, list[str]]:
    return _chain(t, "&&", _atom, absorbing=False)


def _chain(t: list[str], op: str, operand: Callable[[list[str]], tuple[bool | None, list[str]]],
           absorbing: bool) -> tuple[bool | None, list[str]]:
    """Operands joined by `op` in three-valued logic: `absorbing` (True for ||, False for &&)
    decides the whole whatever else is unknown."""
    left, t = operand(t)
    while t and t[0] == op:
        right, t = operand(t[1:])
        left = absorbing if absorbing in (left, right) else None if None in (left, right) else not absorbing
    return left, t


def _atom(t: list[str]) -> tuple[bool | None, list[str]]:
    if t[0] == "(":
        value, t = _or(t[1:])
        if not t or t[0] != ")":
            raise ValueError(t)
        return value, t[1:]
    if t[0] == "!":
        value, t = _atom(t[1:])
        return None if value is None else not value, t
    name, op, literal, t = t[0], t[1], t[2], t[3:]
    if name not in _KNOWN or op not in ("==", "!=", "<", "<=", ">", ">=") or not literal.startswith('"'):
        return None, t
    have, want = _KNOWN[name], literal[1:-1]
    if name == "systemtap_v":
        have_v, want_v = _version(have), _version(want)
        return {"==": have_v == want_v, "!=": have_v != want_v, "<": have_v < want_v, "<=": have_v <= want_v,
                ">": have_v > want_v, ">=": have_v >= want_v}[op], t
    if op in ("==", "!="):  # stap compares arch and CONFIG_ strings as globs
        return fnmatch.fnmatchcase(have, want) == (op == "=="), t
    return None, t


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


_NAMES = re.compile(r"\s*([\w.*]+(?:\s*,\s*[\w.*]+)*)\s*\+?=")


def _definitions(code: str) -> list[tuple[list[str], list[tuple[str, str]], str | None]]:
    """Each ``probe A[, B] = POINT, ...`` (or ``+=``) in `code`: the names, the points with their
    flags, and the undecided condition it is defined under (None: decided). Bodies are skipped."""
    out: list[tuple[list[str], list[tuple[str, str]], str | None]] = []
    for start, end, undecided in _headers(code):
        head = code[start:end]
        m = _NAMES.match(head)
        if m is None:
            continue
        names = [n.strip() for n in m.group(1).split(",")]
        out.append((names, _split_points(head[m.end():]), undecided))
    return out


_TOP = re.compile(r'"(?:\\.|[^"\\\n])*"|%\(|%\)|[{}]|\bprobe\b|\bfunction\b')


def _headers(code: str, undecided: str | None = None) -> list[tuple[int, int, str | None]]:
    """The text of each ``probe`` header at brace depth 0 (after ``probe``, up to its body's ``{``);
    statements inside an undecided conditional are read in each branch, marked with the condition."""
    out: list[tuple[int, int, str | None]] = []
    depth, start, i = 0, None, 0
    while (m := _TOP.search(code, i)) is not None:
        token, i = m.group(), m.end()
        if token == "%(" and depth == 0 and start is None:
            close = _matching(code, m.start())
            inner = code[m.end() : close - 2]
            cond, _, branches = inner.partition("%?")
            then, other = _split_else(branches)
            base = m.end() + len(cond) + 2
            for part, offset in ((then, base), (other, base + len(then) + 2)):
                out += [(s + offset, e + offset, u) for s, e, u in _headers(part, cond.strip())]
            i = close
        elif token in ("%(", "%)"):
            continue
        elif token == "probe" and depth == 0 and start is None:
            start = m.end()
        elif token == "{":
            if depth == 0 and start is not None:
                out.append((start, m.start(), undecided))
                start = None
            depth += 1
        elif token == "}":
            depth = max(0, depth - 1)
    return out


def _matching(code: str, at: int) -> int:
    """The end of the ``%)`` that closes the ``%(`` at `at` (or the end of `code`)."""
    depth = 0
    for m in re.finditer(r'"(?:\\.|[^"\\\n])*"|%\(|%\)', code[at:]):
        depth += {"%(": 1, "%)": -1}.get(m.group(), 0)
        if depth == 0:
            return at + m.end()
    return len(code)


def _split_else(branches: str) -> tuple[str, str]:
    """THEN and ELSE of an undecided conditional's ``A %: B`` (the %: at its own level)."""
    depth = 0
    for m in re.finditer(r'"(?:\\.|[^"\\\n])*"|%\(|%\)|%:', branches):
        if m.group() == "%:" and depth == 0:
            return branches[: m.start()], branches[m.end() :]
        depth += {"%(": 1, "%)": -1}.get(m.group(), 0)
    return branches, ""


_POINT_TOKEN = re.compile(r'"(?:\\.|[^"\\\n])*"|%\(|%\)|[(){}]|,')


def _split_points(text: str) -> list[tuple[str, str]]:
    """The comma-separated points of an alias body, each with its trailing ``?``/``!``; a point
    an undecided conditional chooses is `UNDECIDED` with the condition."""
    points: list[tuple[str, str]] = []
    depth, begin = 0, 0
    for m in _POINT_TOKEN.finditer(text + ","):
        token = m.group()
        if token in ("(", "{", "%("):
            depth += 1
        elif token in (")", "}", "%)"):
            depth -= 1
        elif token == "," and depth == 0:
            point = text[begin : m.start()].strip()
            begin = m.end()
            if not point:
                continue
            point = re.sub(r"\s+if\s*\(.*\)$", "", point, flags=re.S)  # a probe point's condition
            if point.startswith("%("):
                cond = point[2:].partition("%?")[0].strip()
                points.append((f'{UNDECIDED}("{cond}")', ""))
                continue
            flag = point[-1] if point[-1] in "?!" else ""
            points.append((point.rstrip("?!").strip(), flag))
    return points


_MACRO = re.compile(r"@(\w+)")
_ADJACENT = re.compile(r'"((?:\\.|[^"\\])*)"\s*"((?:\\.|[^"\\])*)"')


def _expand_macros(point: str, macros: dict[str, str]) -> str:
    """`point` with its parameterless macros substituted and adjacent strings joined, as stap's
    lexer does (``kprobe.function(@arch_syscall_prefix "sys_read")``)."""
    for _ in range(8):
        expanded = _MACRO.sub(lambda m: macros.get(m.group(1), m.group()), point)
        if expanded == point:
            break
        point = expanded
    while (joined := _ADJACENT.sub(r'"\1\2"', point)) != point:
        point = joined
    return point


def matching(tapsets: Tapsets, pattern: str) -> list[str]:
    """The alias names `pattern` names, component by component (``syscall.*``, ``nfs.fop.*``)."""
    if pattern in tapsets.aliases:
        return [pattern]
    want = pattern.split(".")
    return sorted(name for name in tapsets.aliases
                  if len(parts := name.split(".")) == len(want)
                  and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, want, strict=True)))


def leaves(tapsets: Tapsets, name: str, flag: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """The points alias `name` stands for, aliases of aliases flattened, each with its flag: a
    ``?`` or ``!`` on a use makes each of its points optional; a ``!`` also marks its last point, so
    that once it resolves the points after the use are not used (stap's ``A !, B``; a use whose
    first points resolve and last does not is read as not resolved: an approximation)."""
    out: list[tuple[str, str]] = []
    for definition in tapsets.aliases.get(name, []):
        if definition.undecided is not None:
            out.append((f'{UNDECIDED}("{definition.undecided}")', flag))
            continue
        for point, inner in definition.points:
            head = point.split("(")[0].split(".")
            if depth < _MAX_DEPTH and "(" not in point and point in tapsets.aliases:
                out += leaves(tapsets, point, inner, depth + 1)
            elif depth < _MAX_DEPTH and head and point not in tapsets.aliases and "(" not in point \
                    and matching(tapsets, point):
                for alias in matching(tapsets, point):
                    out += leaves(tapsets, alias, inner, depth + 1)
            else:
                out.append((point, inner))
    if flag in ("?", "!"):  # a use that fails is dropped whole (a `!` point is optional too)
        out = [(p, f or "?") for p, f in out]
    if flag == "!" and out:
        out[-1] = (out[-1][0], "!")
    return out
