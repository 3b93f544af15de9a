"""Probes where users keep them: one reader per tool, chosen by file name or shebang.

* bpftrace (``.bt``, or a ``bpftrace`` shebang): `probelint.readers.bpftrace`;
* libbpf (``.bpf.c``, and the loader ``X.c`` beside it): `probelint.readers.libbpf`;
* shell (``.sh``, or a sh/bash shebang): kprobe_events ``echo`` lines, ``perf probe`` commands
  (`probelint.readers.perf`) and ``bpftrace -e`` one-liners: `probelint.readers.shell`;
* SystemTap (``.stp``, or a stap shebang): `probelint.readers.systemtap`;
* bcc (a Python program, ``.py`` or a python shebang, that calls ``attach_kprobe`` or defines
  ``kprobe__FN``): `probelint.readers.bcc`, read as text, never imported or run;
* Tetragon (a ``.yaml``/``.yml`` TracingPolicy): `probelint.readers.tetragon`;
* anything else: a probe list, one probe per line (`probelint.readers.spec.parse_text`).

Each reader parses the probe points it finds with the kprobe_events grammar
(`probelint.readers.spec.parse_target`), keeping the file, line and column of the probe token
itself. Source lines and SystemTap functions (`SourceLineProbe`) are placed later through the
kernel's DWARF (`probelint.resolve.resolve_source_lines`, `probelint.readers.perf_lines`).
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
from pathlib import Path
from typing import Any

from probelint.errors import InputError, warn
from probelint.readers.spec import Parsed, SourceLineProbe, parse_text

__all__ = ["KINDS", "MAX_PROBES", "Parsed", "SourceLineProbe", "detect_kind", "extract", "tree_files"]

KINDS = ("list", "bpftrace", "libbpf", "shell", "systemtap", "bcc", "tetragon")
BOM = "\ufeff"  # some Windows editors start a UTF-8 file with it: not part of line 1

# Probes checked in one run, wildcard matches included: a bound on memory and time (~1 KB and
# ~40 us each), far above a real probe set (Debian 6.1 has ~35k traceable functions in all).
MAX_PROBES = 100_000


def _reader(kind: str) -> Any:
    """The reader module of `kind`, imported when a file needs it (PyYAML alone, for Tetragon
    policies, is ~12 ms of a warm run that reads none)."""
    return importlib.import_module(f"probelint.readers.{kind}")


def detect_kind(path: str, text: str) -> str:
    first = text.removeprefix(BOM).split("\n", 1)[0]
    if path.endswith(".bt") or (first.startswith("#!") and "bpftrace" in first):
        return "bpftrace"
    if path.endswith(".bpf.c"):
        return "libbpf"
    if path.endswith(".stp") or (first.startswith("#!") and "stap" in first):
        return "systemtap"
    if path.endswith((".sh", ".bash")) or (first.startswith("#!") and re.search(r"\b(ba|da|z|k)?sh\b", first)):
        return "shell"
    python = path.endswith(".py") or (first.startswith("#!") and re.search(r"\bpython[0-9.]*\b", first))
    if python and _reader("bcc").looks_like_bcc(text):
        return "bcc"
    if path.endswith((".yaml", ".yml")) and _reader("tetragon").looks_like_policy(text):
        return "tetragon"
    return "list"


# Files probelint reads no probes from, by extension: named explicitly they are refused, not read
# as a probe list (one KP001 per line); a tree walk never picks them (`tree_files`).
_OTHER_SUFFIXES = {
    ".py": "a Python program", ".pl": "a Perl program", ".pm": "a Perl module", ".rb": "a Ruby program",
    ".js": "a JavaScript program", ".ts": "a TypeScript program", ".go": "Go source", ".rs": "Rust source",
    ".lua": "a Lua program", ".awk": "an awk program", ".c": "C source that is not libbpf BPF C (.bpf.c)",
    ".h": "a C header", ".cc": "C++ source", ".cpp": "C++ source", ".hpp": "a C++ header",
    ".yaml": "a YAML file", ".yml": "a YAML file", ".json": "a JSON file", ".toml": "a TOML file",
    ".xml": "an XML file", ".html": "an HTML page", ".md": "a Markdown document", ".rst": "a reStructuredText document",
}
# interpreters named on a #! line (through env too) that run no probe file probelint reads
_OTHER_INTERPRETERS = {r"python[0-9.]*": "a Python program", r"perl[0-9.]*": "a Perl program",
                       r"ruby[0-9.]*": "a Ruby program", r"node(js)?": "a JavaScript program",
                       r"[gm]?awk": "an awk program", r"lua[0-9.]*": "a Lua program", r"php[0-9.]*": "a PHP program"}


def _other_kind(path: str, text: str) -> str | None:
    """What a file that no reader takes looks like (by extension, then #! line), None for a probe list."""
    suffix = Path(path).suffix.lower()
    if suffix in _OTHER_SUFFIXES:
        return _OTHER_SUFFIXES[suffix]
    first = text.removeprefix(BOM).split("\n", 1)[0]
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if words and Path(words[0]).name == "env":  # env [-S] [-i] [NAME=VALUE]... PROGRAM
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    if not words:
        return None
    program = Path(words[0]).name
    return next((what for name, what in _OTHER_INTERPRETERS.items() if re.fullmatch(name, program)),
                f"a {program} script")


def extract(path: str, text: str, kind: str | None = None, limit: int = MAX_PROBES) -> list[Parsed]:
    """The probes of one file, in file order. Without `kind`, a file that looks like neither a
    tool's probe file nor a probe list is refused (InputError), as is one with more than `limit`
    probes (read no further than that)."""
    if kind is None:
        kind = detect_kind(path, text)
        other = _other_kind(path, text) if kind == "list" else None
        if other is not None:
            raise InputError(path, f"{other}, not a probe file probelint reads "
                                   "(--source-type list reads it as a probe list)")
    if text.startswith(BOM):  # a blank in its place keeps the columns of line 1 those of the file
        text = " " + text[1:]
    if kind not in KINDS:
        raise InputError(path, f"no reader for source type {kind!r} ({', '.join(KINDS)})")
    read = parse_text if kind == "list" else _reader(kind).read
    probes = list(itertools.islice(read(text, path), limit + 1))
    if len(probes) > limit:
        raise InputError(path, f"more than {MAX_PROBES} probes in one run: probelint checks probes that are live "
                               "together (for every probe point of a kernel: probelint map)")
    return probes


_PROBE_SUFFIXES = (".bt", ".bpf.c", ".sh", ".bash", ".stp", ".kprobes", "probes.txt")


def tree_files(root: Path) -> list[Path]:
    """The files of a tree that hold probes (by name, else by content: `_sniff`), in path order,
    hidden entries left out.
    The walk stays in the tree: a symbolic link is followed only to a file inside it (a link out
    of it, planted or not, is reported on stderr and not read); a directory it cannot list is an
    error (its probes would go unchecked). Files that are not regular (a FIFO named x.bt) are
    listed, for reading to refuse them (`probelint.fileio.open_regular`)."""
    top = os.path.realpath(root)
    out: list[Path] = []
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as found:
                entries = sorted(found, key=lambda e: e.name)
        except OSError as exc:
            raise InputError(str(directory), f"cannot list the directory: {exc.strerror or exc} "
                                             "(its probe files would go unchecked)") from None
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                target = os.path.realpath(path)
                if not entry.name.endswith(_PROBE_SUFFIXES) or os.path.isdir(target):
                    continue  # never walked into: no loops, no trees elsewhere
                if os.path.commonpath([top, target]) != top:
                    warn(str(path), f"a symbolic link out of {root} (to {target}): not followed")
                    continue
                out.append(path)
            elif entry.is_dir(follow_symlinks=False):
                subdirs.append(path)
            elif entry.name.endswith(_PROBE_SUFFIXES) or (
                    Path(entry.name).suffix in _SNIFFED and entry.is_file(follow_symlinks=False) and _sniff(path, top)):
                out.append(path)
        pending.extend(reversed(subdirs))
    return sorted(out, key=lambda p: p.parts)


# Names that may hold probes by content: a script without extension (perf-tools' kprobe, bcc's
# installed tools) by its #! line, a Python program by its bcc calls, YAML by its TracingPolicy head
_SNIFFED = ("", ".py", ".yaml", ".yml")
_SNIFF_LIMIT = 1 << 20  # read no more of a file to decide; a larger one is not taken


def _sniff(path: Path, tree: str) -> bool:
    """Whether a file a walk meets holds probes by its content. Regular files only, never through
    a link at its name (`open_regular`); one that cannot be read is reported and left out."""
    from probelint.fileio import open_regular

    try:
        with open_regular(path, follow=False, verb="read", inside=tree) as fh:
            head = fh.read(2)
            if not path.suffix and head != b"#!":
                return False  # a Makefile, a README: no need to read on
            data = head + fh.read(_SNIFF_LIMIT)
    except (InputError, OSError) as exc:
        warn(str(path), f"{exc.detail if isinstance(exc, InputError) else exc}: not read for probes")
        return False
    if len(data) > _SNIFF_LIMIT:
        return False
    try:
        return detect_kind(str(path), data.decode()) != "list"
    except UnicodeDecodeError:
        return False
