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

import functools
import hashlib
import json
import os
import sys
import zlib
from collections.abc import Iterable, Sequence

from probelint._version import __version__
from probelint.checks import ProbeContext, ProbeResult, all_rules
from probelint.findings import Finding, Fix, Location, Severity
from probelint.gate import Gate
from probelint.image.cache import IndexCache
from probelint.image.kallsyms import KSym
from probelint.image.kernel import Kernel
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
        if st is None:
            # another probelint, another configuration or another set of modules: one store per
            # first image, so that a cache does not grow with every configuration ever run
            directory.remove_stale(prefix, name)
        elif st.st_size > _MAX_FILE:
            directory.remove(name)
        return cls(directory, name)

    def restore(self, contexts: dict[int, ProbeContext], kernel: Kernel) -> dict[int, ProbeResult]:
        """The stored results of those of `contexts` (by index) that have one."""
        keys = {probe_key(ctx.spec): k for k, ctx in contexts.items()}
        wanted = sorted(keys)
        rows: list[Sequence[object]] = []
        for start in range(0, len(wanted), 500):  # under SQLite's oldest bound-parameter limit
            chunk = wanted[start : start + 500]
            rows += self.select(f"SELECT probe, value, crc FROM results WHERE probe IN ({','.join('?' * len(chunk))})",
                                chunk)
        out: dict[int, ProbeResult] = {}
        for probe, value, crc in rows:
            k = keys.get(probe)  # type: ignore[arg-type]
            try:
                if k is None or type(value) is not str or crc != _crc(probe, value):  # type: ignore[arg-type]
                    raise BadResult("checksum mismatch")
                out[k] = _decode(json.loads(value), contexts[k], kernel)
            except (BadResult, ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
                self._discard(f"a stored result fails its checks ({exc})")
                return {}
        return out

    def keep(self, results: Iterable[ProbeResult], kernel: Kernel) -> None:
        """Store these freshly checked results, and close the store."""
        for result in results:
            if result.context is None or not isinstance(result.spec, ProbeSpec) or result.fired & _NOT_STORED:
                continue
            probe = probe_key(result.spec)
            value = json.dumps(_encode(result, kernel), separators=(",", ":"))
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
    vmlinux = kernel.vmlinux
    dotconfig = vmlinux._dotconfig if vmlinux is not None else None
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


def _encode(result: ProbeResult, kernel: Kernel) -> list[object]:
    ctx, v = result.context, result.verdict
    assert ctx is not None
    index = {id(image): k for k, image in enumerate(kernel.images)}
    findings = [[f.rule, int(f.severity), f.message, list(f.location), list(f.notes),
                 list(f.fix) if f.fix is not None else None] for f in result.findings]
    return [index.get(id(ctx.image)), _symbol(ctx.symbol), ctx.address, _symbol(ctx.named),
            index.get(id(ctx.named_image)), ctx.on_func_entry, [v.registers, v.errno, v.optimized, v.ftrace, v.reasons],
            findings, sorted(result.fired), ctx.window_end() if v.optimized else None]


def _expect(value: object, *types: type) -> object:
    if type(value) not in types:
        raise BadResult(f"{type(value).__name__} where {'/'.join(t.__name__ for t in types)} belongs")
    return value


def _text_list(value: object) -> list[str]:
    items = _expect(value, list)
    assert isinstance(items, list)
    for item in items:
        _expect(item, str)
    return items


def _rule_ids(value: object) -> list[str]:
    ids = _text_list(value)
    rules = all_rules()
    for rule in ids:
        if rule not in rules:
            raise BadResult(f"unknown rule {rule!r}")
    return ids


def _ksym(value: object) -> KSym | None:
    if value is None:
        return None
    name, address, size, kind = _expect(value, list)  # type: ignore[misc]
    return KSym(_expect(name, str), _expect(address, int), _expect(size, int), _expect(kind, str))  # type: ignore[arg-type]


def _image_index(value: object, kernel: Kernel) -> int | None:
    if value is None:
        return None
    k = _expect(value, int)
    assert isinstance(k, int)
    if not 0 <= k < len(kernel.images):
        raise BadResult("an image the kernel does not have")
    return k


def _finding(value: object) -> Finding:
    rule, severity, message, location, notes, fix = _expect(value, list)  # type: ignore[misc]
    _rule_ids([rule])
    file, line, column = _expect(location, list)  # type: ignore[misc]
    if fix is not None:
        replacement, safe, description, remove = _expect(fix, list)  # type: ignore[misc]
        fix = Fix(_expect(replacement, str), _expect(safe, bool), _expect(description, str),  # type: ignore[arg-type]
                  _expect(remove, bool))  # type: ignore[arg-type]
    return Finding(rule, Severity(_expect(severity, int)), _expect(message, str),  # type: ignore[arg-type]
                   Location(_expect(file, str), _expect(line, int), _expect(column, int)),  # type: ignore[arg-type]
                   tuple(_text_list(notes)), fix)


def _decode(value: object, ctx: ProbeContext, kernel: Kernel) -> ProbeResult:
    """The stored result restored onto the run's context for its probe, every field checked."""
    image, symbol, address, named, named_image, entry, verdict, findings, fired, window_end = \
        _expect(value, list)  # type: ignore[misc]
    registers, errno, optimized, ftrace, reasons = _expect(verdict, list)  # type: ignore[misc]
    images = kernel.images
    at, named_at = _image_index(image, kernel), _image_index(named_image, kernel)
    ctx.image = images[at] if at is not None else None
    ctx.named_image = images[named_at] if named_at is not None else None
    ctx.symbol, ctx.named = _ksym(symbol), _ksym(named)
    ctx.address = _expect(address, int, type(None))  # type: ignore[assignment]
    ctx.on_func_entry = _expect(entry, bool)  # type: ignore[assignment]
    ctx._window_end = _expect(window_end, int, type(None))  # type: ignore[assignment]
    v = ctx.verdict
    v.registers = _expect(registers, bool, type(None))  # type: ignore[assignment]
    v.errno = _expect(errno, str, type(None))  # type: ignore[assignment]
    v.optimized = _expect(optimized, bool, type(None))  # type: ignore[assignment]
    v.ftrace = _expect(ftrace, bool)  # type: ignore[assignment]
    v.reasons = _rule_ids(reasons)
    result = ProbeResult(ctx.spec, v, [_finding(f) for f in _expect(findings, list)], ctx)  # type: ignore[union-attr]
    result.fired = set(_rule_ids(fired))
    return result
