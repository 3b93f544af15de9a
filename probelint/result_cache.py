"""Each probe's checked result, kept so that a run over unchanged probes does not check them again.

A pre-commit hook lints the same probe files against the same kernel on every commit: most probes
are the ones checked last time. As ruff keeps its diagnostics per file, probelint keeps a probe's
result (where it resolved, the verdict, the findings and the rules that fired) under a key made of
everything `engine._check_one` reads:

* the probe as written (`ProbeSpec`: text, location, tool and registration path, suppressions);
* the kernel: each image's index key (build-id, and for a module its vmlinux's and its load
  address), whether a module is arriving, the CPU profile, the .config given, the modules known
  not to be loaded;
* the rules reported and their configured severities (the gate);
* probelint's own code (every module's size and modification time) and the decoder's version.

What is outside that key is never stored: a run on a live system (its state is the running
kernel's), a kernel with an image that has no build-id, and a result KP101 gave (its did-you-mean
reads the module tree beside the kernel, which can change under the same key). The set rules and
the hints run on every run, over cached and checked results alike.

The store is a checked SQLite file of the cache (image/sqlite_store.py): plain columns, JSON text
and a CRC-32 per row. A row that fails its checksum or its schema discards the file with one line;
the probe is then checked again, never trusted.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import zlib
from collections.abc import Iterable, Sequence

from probelint._version import __version__
from probelint.checks import ProbeContext, ProbeResult, Rule, all_rules
from probelint.findings import Finding, Fix, Location, Severity
from probelint.gate import Gate
from probelint.image.cache import IndexCache
from probelint.image.cachefs import CacheDir
from probelint.image.kallsyms import KSym
from probelint.image.kernel import Image, Kernel
from probelint.image.sqlite_store import SqliteStore
from probelint.readers.spec import ProbeSpec

__all__ = ["ResultStore"]

_SCHEMA = ("CREATE TABLE results (probe TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, crc INTEGER NOT NULL) "
           "WITHOUT ROWID")
_MAX_FILE = 256 << 20  # a store this large holds long-gone probes: started again
_NOT_STORED = frozenset({"KP101"})  # their findings read what the key does not cover (the module tree)


class BadResult(ValueError):
    """A stored result that is not one probelint wrote for this run's kernel."""


class ResultStore(SqliteStore):
    """``<cache>/results/<first image's build-id>-<run key>.results.sqlite``: one row per probe."""

    schema = _SCHEMA
    table = "results"
    columns = 3
    kind = "result store"

    def __init__(self, directory: CacheDir, name: str) -> None:
        super().__init__(directory, name)
        self.taken = 0  # probes whose result the last `restore` took from the store
        self._key_of: dict[int, str] = {}  # `restore`'s probe keys by id of the spec: `keep` stores under them

    @classmethod
    def open(cls, kernel: Kernel, gate: Gate) -> ResultStore | None:
        """The store for this kernel and gate, in the cache its images were loaded from, or None
        when results must not be kept (see above)."""
        keys = [image.index_key for image in kernel.images]
        if kernel.live is not None or kernel.cache is None or not keys or None in keys:
            return None
        directory = IndexCache(kernel.cache.root, "results").directory
        if directory is None:
            return None
        run = hashlib.blake2b(_run_identity(kernel, gate).encode(), digest_size=16).hexdigest()
        prefix = f"{keys[0]}-"
        name = f"{prefix}{run}.results.sqlite"
        st = directory.lstat(name)
        with contextlib.suppress(OSError):  # a cache that cannot be cleaned only takes room
            if st is None:
                # another probelint, another configuration or another set of modules: one store per
                # first image, so that a cache does not grow with every configuration ever run
                directory.remove_stale(prefix, name)
            elif st.st_size > _MAX_FILE:
                directory.remove(name)
        return cls(directory, name)

    def restore(self, contexts: dict[int, ProbeContext], kernel: Kernel) -> dict[int, ProbeResult]:
        """The stored results of those of `contexts` (by index) that have one, each on a new
        context; all or none (a row that fails its checks discards the store)."""
        self._key_of = {id(ctx.spec): probe_key(ctx.spec) for ctx in contexts.values()}
        keys = {self._key_of[id(ctx.spec)]: k for k, ctx in contexts.items()}
        wanted = sorted(keys)
        rows: list[Sequence[object]] = []
        for start in range(0, len(wanted), 500):  # under SQLite's oldest bound-parameter limit
            chunk = wanted[start : start + 500]
            rows += self.select(f"SELECT probe, value, crc FROM results WHERE probe IN ({','.join('?' * len(chunk))})",
                                chunk)
        found: list[int] = []
        values: list[str] = []
        for probe, value, crc in rows:
            k = keys.get(probe)  # type: ignore[arg-type]
            if k is None or type(value) is not str or crc != _crc(probe, value):  # type: ignore[arg-type]
                self._discard("a stored result fails its checks (checksum mismatch)")
                return {}
            found.append(k)
            values.append(value)
        try:
            # one parse for all rows: json.loads' own call costs as much as a row's parsing
            decoded = json.loads(f"[{','.join(values)}]")
            rules = all_rules()
            out = {k: _decode(value, contexts[k].spec, kernel, rules) for k, value in zip(found, decoded, strict=True)}
            self.taken = len(out)
            return out
        except (BadResult, ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
            self._discard(f"a stored result fails its checks ({exc})")
            return {}

    def keep(self, results: Iterable[ProbeResult], kernel: Kernel) -> None:
        """Store these freshly checked results, and close the store."""
        index = {id(image): k for k, image in enumerate(kernel.images)}
        for result in results:
            if result.context is None or not isinstance(result.spec, ProbeSpec) or result.fired & _NOT_STORED:
                continue
            probe = self._key_of.get(id(result.spec)) or probe_key(result.spec)
            value = json.dumps(_encode(result, index), separators=(",", ":"))
            self.queue((probe, value, _crc(probe, value)))
        self.flush()
        self.close()


def _crc(probe: str, value: str) -> int:
    """Binds a row's value to its probe: a row of another probe or a flipped byte is refused
    (corruption, not forgery: the cache directory is the user's alone, see image/cachefs.py)."""
    return zlib.crc32(value.encode(), zlib.crc32(probe.encode()))


def probe_key(spec: ProbeSpec) -> str:
    """The probe as written, every field: its repr, with sets in sorted order (a frozenset's
    order changes with the interpreter's string hashing)."""
    return repr(_ordered(spec))


def _ordered(spec: ProbeSpec) -> object:
    if not spec.suppressed and spec.expanded_from is None:
        return spec
    return spec._replace(suppressed=tuple(sorted(spec.suppressed)),  # type: ignore[arg-type]
                         expanded_from=spec.expanded_from and _ordered(spec.expanded_from))


def _run_identity(kernel: Kernel, gate: Gate) -> str:
    """Everything besides the probe itself that a probe's result depends on, as text."""
    images = [(image.name, image.index_key, image.coming) for image in kernel.images]
    dotconfig = kernel.vmlinux.dotconfig if kernel.vmlinux is not None else None
    select = sorted(gate.select) if gate.select is not None else None
    severity = sorted((rule, int(level)) for rule, level in gate.severity.items())
    return repr((_code_stamp(), images, kernel.profile.cache_key, dotconfig, sorted(kernel.unloaded), select,
                 severity))


@functools.cache
def _code_stamp() -> tuple[object, ...]:
    """probelint's code as installed and the decoder's (each module's name, size and modification
    time, as Python checks its bytecode against its source; iced-x86 is not imported for it: a run
    whose results are all stored never decodes), and the interpreter's version."""
    from importlib.util import find_spec

    stamps: list[tuple[str, int, int]] = []
    _stamp_tree(os.path.dirname(os.path.abspath(__file__)), "probelint/", stamps)
    decoder = find_spec("iced_x86")
    if decoder is not None and decoder.submodule_search_locations:
        for path in decoder.submodule_search_locations:
            _stamp_tree(path, "iced_x86/", stamps)
    return (__version__, sys.version_info[:2], sorted(stamps))


def _stamp_tree(path: str, prefix: str, out: list[tuple[str, int, int]]) -> None:
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name.endswith((".py", ".so")):
                st = entry.stat()
                out.append((prefix + entry.name, st.st_size, st.st_mtime_ns))
            elif entry.name != "__pycache__" and entry.is_dir(follow_symlinks=False):
                _stamp_tree(entry.path, f"{prefix}{entry.name}/", out)


def _symbol(sym: KSym | None) -> list[object] | None:
    return None if sym is None else [sym.name, sym.address, sym.size, sym.type]


def _encode(result: ProbeResult, index: dict[int, int]) -> list[object]:
    """A result as plain JSON values (`_decode` reads them back); images by their `index`."""
    ctx, v = result.context, result.verdict
    assert ctx is not None
    findings = [[f.rule, int(f.severity), f.message, list(f.location), list(f.notes),
                 list(f.fix) if f.fix is not None else None] for f in result.findings]
    return [index.get(id(ctx.image)), _symbol(ctx.symbol), ctx.address, _symbol(ctx.named),
            index.get(id(ctx.named_image)), ctx.on_func_entry, [v.registers, v.errno, v.optimized, v.ftrace, v.reasons],
            findings, sorted(result.fired), ctx.window_end() if v.optimized else None]


_OPTIONAL_INT = (int, type(None))
_OPTIONAL_BOOL = (bool, type(None))
_OPTIONAL_STR = (str, type(None))


def _ksym(value: object) -> KSym | None:
    if value is None:
        return None
    if type(value) is not list:
        raise BadResult("a symbol that is not a list")
    name, address, size, kind = value
    if type(name) is not str or type(address) is not int or type(size) is not int or type(kind) is not str:
        raise BadResult("a symbol field of the wrong type")
    return KSym(name, address, size, kind)


def _image(value: object, images: list[Image]) -> Image | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < len(images):  # type: ignore[operator]
        raise BadResult("an image the kernel does not have")
    return images[value]  # type: ignore[index]


def _texts(value: object) -> bool:
    return type(value) is list and all(type(item) is str for item in value)  # type: ignore[attr-defined]


def _finding(value: object, rules: dict[str, Rule]) -> Finding:
    if type(value) is not list:
        raise BadResult("a finding that is not a list")
    rule, severity, message, location, notes, fix = value
    if rule not in rules or type(message) is not str or type(location) is not list or not _texts(notes):
        raise BadResult("a finding field of the wrong type")
    file, line, column = location
    if type(file) is not str or type(line) is not int or type(column) is not int:
        raise BadResult("a location of the wrong type")
    if fix is not None:
        if type(fix) is not list:
            raise BadResult("a fix that is not a list")
        replacement, safe, description, remove = fix
        if type(replacement) is not str or type(safe) is not bool or type(description) is not str or \
                type(remove) is not bool:
            raise BadResult("a fix field of the wrong type")
        fix = Fix(replacement, safe, description, remove)
    if type(severity) is not int:
        raise BadResult("a severity that is not a level")
    return Finding(rule, Severity(severity), message, Location(file, line, column), tuple(notes), fix)


def _decode(value: object, spec: ProbeSpec, kernel: Kernel, rules: dict[str, Rule]) -> ProbeResult:
    """The stored result of `spec`, every field checked (inline: a warm run restores thousands),
    on a context of its own: a row refused after others leaves the run's contexts untouched."""
    if type(value) is not list:
        raise BadResult("a result that is not a list")
    image, symbol, address, named, named_image, entry, verdict, findings, fired, window_end = value
    if type(verdict) is not list:
        raise BadResult("a verdict that is not a list")
    registers, errno, optimized, ftrace, reasons = verdict
    if type(address) not in _OPTIONAL_INT or type(window_end) not in _OPTIONAL_INT or type(entry) is not bool \
            or type(registers) not in _OPTIONAL_BOOL or type(errno) not in _OPTIONAL_STR \
            or type(optimized) not in _OPTIONAL_BOOL or type(ftrace) is not bool or type(findings) is not list \
            or not _texts(reasons) or not _texts(fired) or not rules.keys() >= {*reasons, *fired}:
        raise BadResult("a field of the wrong type, or an unknown rule")
    images = kernel.images
    ctx = ProbeContext(spec, kernel)
    ctx.image, ctx.named_image = _image(image, images), _image(named_image, images)
    ctx.symbol, ctx.named = _ksym(symbol), _ksym(named)
    ctx.address, ctx.on_func_entry, ctx._window_end = address, entry, window_end
    v = ctx.verdict
    v.registers, v.errno, v.optimized, v.ftrace, v.reasons = registers, errno, optimized, ftrace, reasons
    result = ProbeResult(ctx.spec, v, [_finding(f, rules) for f in findings], ctx)
    result.fired = set(fired)
    return result
