"""Shell words as a script's commands see them: quotes removed, and ``$NAME``/``${NAME}`` expanded
where the script itself gives the value.

A variable is expanded only where its value is known without running anything: one assignment of
a literal (or of literals and such variables) in the same script, before the use, and not inside a
function the use is outside of. Anything else (a positional parameter, two assignments, a ``for``
loop, ``read``, a command substitution) leaves the word unknown, with why and where.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from probelint.readers.text import Lines

__all__ = ["ShellWord", "Variables", "split_words", "uncommented"]


class ShellWord(NamedTuple):
    text: str  # quotes removed, variables expanded
    where: list[int]  # the file offset of each character (an expanded variable's: its `$`)
    raw: str  # as written
    # (offset, why) of the first part whose value the script does not give
    unknown: tuple[int, str] | None = None
    expanded: bool = False  # a variable's value is part of `text`


_NAME = r"[A-Za-z_]\w*"
_REF = re.compile(rf"\$\{{({_NAME}|[0-9]+|[@*#?$!-])\}}|\$({_NAME}|[0-9@*#?$!-])|\$\(|`")
# `NAME=VALUE` where a command starts (line start, after ; & | ( {, a keyword, or local/export...)
_VALUE = r"""'[^'\n]*'|"(?:\\.|[^"\\\n])*"|[^\s;&|)'"]+"""
_ASSIGN = re.compile(rf"""(?:^|[;&|({{]|\b(?:then|do|else|local|export|readonly|declare|typeset)\b)"""
                     rf"""[ \t]*(?:-\w+[ \t]+)*({_NAME})=((?:{_VALUE})*)""", re.M)
_LOOP = re.compile(rf"\b(for|select)[ \t]+({_NAME})[ \t]+in\b")
_READ = re.compile(rf"\bread\b((?:[ \t]+-\S+)*(?:[ \t]+{_NAME})+)")
_FUNCTION = re.compile(rf"^[ \t]*(?:function[ \t]+({_NAME})[ \t]*(?:\(\))?|({_NAME})[ \t]*\(\))[ \t]*\{{", re.M)
_BRACE = re.compile(r"(?<![\w$])\{(?=\s)|(?<=[\s;])\}(?=[\s;]|$)", re.M)
_PART = re.compile(r"""'([^']*)'|"((?:\\.|[^"\\])*)"|([^'"]+)""")
_SUBSTITUTION = ("a command substitution: its output is known only when the script runs",)
_MAX_DEPTH = 8  # a variable built from variables: deeper (or a cycle) is left unknown


# What decides where a comment may start: quotes and escapes (a `#` in them is text), a here-document
# (its body has no quoting: a script fed to a shell or lines fed to kprobe_events, whose `#` words
# start comments too), and a `#` that begins a word (after a blank or an operator: `$#`, `${#x}`,
# `a#b` are not comments).
_LEXEME = re.compile(r"""\\.|'[^']*(?:'|\Z)|"(?:\\.|[^"\\])*(?:"|\Z)"""
                     r"""|<<-?[ \t]*(?:'([^'\n]*)'|"([^"\n]*)"|\\?([A-Za-z_][^\s;&|<>()]*))"""
                     r"""|(?:^|(?<=[\s;&|()<>]))#[^\n]*|\n""", re.M | re.S)
_WORD_COMMENT = re.compile(r"(?:^|(?<=[\s;&|()<>]))#[^\n]*", re.M)


def uncommented(text: str) -> str:
    """`text` with each comment blanked (spaces, same length: offsets, lines and columns stay the
    file's), so that a command written in a comment (``# echo 'p:... FN' >> kprobe_events``) is
    not read as one. One pass over the text."""
    out: list[str] = []
    last = pos = 0
    heredocs: list[tuple[str, bool]] = []  # delimiters of here-documents whose body starts at the next line
    while (m := _LEXEME.search(text, pos)) is not None:
        lexeme = m.group()
        pos = m.end()
        if lexeme.startswith("#"):
            out += [text[last : m.start()], " " * len(lexeme)]
            last = pos
        elif lexeme.startswith("<<"):
            heredocs.append((m.group(1) or m.group(2) or m.group(3) or "", lexeme.startswith("<<-")))
        elif lexeme == "\n" and heredocs:
            for delimiter, tabs in heredocs:  # each body runs to a line holding only its delimiter
                end = re.compile(rf"^{chr(9) + '*' if tabs else ''}{re.escape(delimiter)}$", re.M).search(text, pos)
                body_end = end.start() if end is not None else len(text)
                for comment in _WORD_COMMENT.finditer(text, pos, body_end):
                    out += [text[last : comment.start()], " " * len(comment.group())]
                    last = comment.end()
                pos = end.end() if end is not None else len(text)
            heredocs.clear()
    out.append(text[last:])
    return "".join(out)


class _Assignment(NamedTuple):
    offset: int  # of the name
    value: str | None  # as written; None: not a literal (a loop variable, read)
    how: str  # "for loop", "read": what set it, for the messages


class Variables:
    """The assignments of one script, and the function bodies they are in."""

    def __init__(self, text: str, lines: Lines) -> None:
        self.lines = lines
        self.assigned: dict[str, list[_Assignment]] = {}
        for m in _ASSIGN.finditer(text):
            self._add(m.group(1), _Assignment(m.start(1), m.group(2), "assignment"))
        for m in _LOOP.finditer(text):
            self._add(m.group(2), _Assignment(m.start(2), None, f"{m.group(1)} loop"))
        for m in _READ.finditer(text):
            for name in re.finditer(rf"(?<![-\w]){_NAME}", m.group(1)):
                self._add(name.group(), _Assignment(m.start(1) + name.start(), None, "read"))
        self.functions = _functions(text)

    def _add(self, name: str, assignment: _Assignment) -> None:
        self.assigned.setdefault(name, []).append(assignment)

    def _function(self, offset: int) -> tuple[int, int, str] | None:
        """The innermost function body holding `offset` (a function defined inside another starts later)."""
        return next((f for f in reversed(self.functions) if f[0] <= offset < f[1]), None)

    def value(self, name: str, at: int, depth: int = 0) -> str | tuple[str]:
        """`name`'s value at offset `at`, or (why it is not known,)."""
        if not re.fullmatch(_NAME, name):
            return (f"${name} is a positional parameter (set where the script is run)" if name[0].isdigit()
                    or name in "@*#" else f"${name} is a special parameter",)
        found = self.assigned.get(name, [])
        if not found:
            return (f"${name} is not assigned in this script (the environment's, or another script's)",)
        lines = ", ".join(str(self.lines.location(a.offset).line) for a in found)
        if len(found) > 1:
            return (f"${name} is assigned {len(found)} times (lines {lines})",)
        (assignment,) = found
        if assignment.value is None:
            return (f"${name} is set by the {assignment.how} at line {lines}",)
        home = self._function(assignment.offset)
        if home is not None and not home[0] <= at < home[1]:
            return (f"${name} is assigned in function {home[2]} at line {lines}, which may not have run",)
        if assignment.offset > at:
            return (f"${name} is assigned after its use (line {lines})",)
        if depth >= _MAX_DEPTH:
            return (f"${name} is built from variables nested too deep",)
        word = _word(assignment.value, assignment.offset, self, depth + 1)
        if word.unknown is not None:
            return (f"${name} is assigned at line {lines} from what the script does not give: {word.unknown[1]}",)
        return word.text


def _functions(text: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of each function body, by the standalone braces that open and close it
    (matched in one pass: an unclosed body runs to the end)."""
    closing: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE.finditer(text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            closing[stack.pop()] = m.start()
    return sorted((m.end(), closing.get(m.end() - 1, len(text)), m.group(1) or m.group(2))
                  for m in _FUNCTION.finditer(text))


def _word(raw: str, offset: int, variables: Variables | None, depth: int = 0) -> ShellWord:
    chars: list[str] = []
    where: list[int] = []
    unknown: tuple[int, str] | None = None
    expanded = False
    for part in _PART.finditer(raw):
        group = next(g for g in (1, 2, 3) if part.group(g) is not None)
        body, start = part.group(group), offset + part.start(group)
        if group == 1 or variables is None or ("$" not in body and "`" not in body):
            chars.append(body)
            where.extend(range(start, start + len(body)))
            continue
        last = 0
        for ref in _REF.finditer(body):
            chars.append(body[last : ref.start()])
            where.extend(range(start + last, start + ref.start()))
            last = ref.end()
            name = ref.group(1) or ref.group(2)
            value = variables.value(name, start + ref.start(), depth) if name else _SUBSTITUTION
            if isinstance(value, tuple):
                unknown = unknown or (start + ref.start(), value[0])
                continue
            chars.append(value)
            where.extend([start + ref.start()] * len(value))
            expanded = True
        chars.append(body[last:])
        where.extend(range(start + last, start + len(body)))
    return ShellWord("".join(chars), where, raw, unknown, expanded)


def split_words(args: str, offset: int, variables: Variables | None = None) -> list[ShellWord]:
    """The shell words of `args` (at `offset` in the file); with `variables`, ``$NAME`` expanded
    where the script gives its value (`Variables.value`), else the word is `unknown`."""
    return [_word(m.group(), offset + m.start(), variables)
            for m in re.finditer(r"""(?:'[^']*'|"(?:\\.|[^"\\])*"|[^\s'"])+""", args)]
