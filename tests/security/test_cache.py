"""The cache is data, not code, and it is the user's (issue #14, items 1 and 2).

Planted pickles, crafted files of the index format, crafted fact rows, byte flips, foreign owners,
group-writable modes and planted symbolic links: each run either gives exactly the clean run's
verdicts or rebuilds with one line on stderr; nothing runs, nothing outside the cache is written.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib
from array import array
from pathlib import Path

import pytest

import probelint
from probelint.image import cachefs
from tests.conftest import DEMO, ROOT

PROBES = [p for line in (DEMO / "probes.txt").read_text().splitlines() if (p := line.split("#")[0].strip())]
OTHER_UID = 54321


def verdicts(cache_dir: Path) -> list[tuple]:
    # these tests corrupt the index and the fact store: every run reads them, not the probes'
    # stored results (whose own corruption suite is tests/test_result_cache.py)
    shutil.rmtree(cache_dir / "results", ignore_errors=True)
    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=cache_dir, cache=True)
    out = [(r.verdict.registers, r.verdict.errno, r.verdict.optimized, r.verdict.ftrace,
            [f.rule for f in r.findings]) for r in probelint.check(kernel, PROBES)]
    if kernel.vmlinux is not None:
        kernel.vmlinux.save_facts()
    return out


@pytest.fixture
def clean(tmp_path):
    """The clean run's verdicts, and the cache it leaves (index + fact store)."""
    cache = tmp_path / "cache"
    expected = verdicts(cache)
    assert verdicts(cache) == expected  # warm equals cold
    return expected, cache


def index_file(cache: Path) -> Path:
    (found,) = [p for p in (cache / "index").iterdir() if not p.name.endswith((".sqlite", "-journal"))]
    return found


def facts_file(cache: Path) -> Path:
    (found,) = (cache / "index").glob("*.facts.sqlite")
    return found


def warnings(capsys) -> list[str]:
    cachefs._said.clear()  # each run says its own line
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("probelint:")]


def assert_one_line(capsys, cache: Path, expected: list[tuple], text: str) -> None:
    """A run on `cache` gives the clean verdicts and says one line about the cache, naming `text`."""
    warnings(capsys)
    assert verdicts(cache) == expected
    (line,) = warnings(capsys)
    assert text in line


# ------------------------------------------------------------------ nothing in the cache runs code

def test_a_planted_pickle_at_the_index_name_runs_nothing(clean, tmp_path, capsys):
    expected, cache = clean
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle

    index = index_file(cache)
    index.write_bytes(pickle.dumps(Payload()))
    facts = facts_file(cache)
    db = sqlite3.connect(facts)  # every column of every row: a pickle, in whatever schema is there
    (table,) = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    db.execute(f"UPDATE {table} SET " + ", ".join(f"{c} = ?" for c in columns[2:]),
               [pickle.dumps(Payload())] * len(columns[2:]))
    db.commit()
    db.close()
    warnings(capsys)
    assert verdicts(cache) == expected
    assert not marker.exists()
    assert len(warnings(capsys)) <= 2  # the index and the fact store: one line each
    assert verdicts(cache) == expected and not warnings(capsys)  # rebuilt: the next run is quiet


def test_no_pickle_is_read_from_disk():
    """pickle stays only where a forked checker hands results to its parent through a pipe."""
    users = subprocess.run(["grep", "-rlE", r"\b(pickle|marshal|shelve)\b", "probelint", "--include=*.py"],
                           cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert users == ["probelint/engine.py"]


def write_index(path: Path, head: bytes, blobs: bytes = b"", blob_len: int | None = None) -> None:
    """A file of the index format with a correct checksum (what only the user could write)."""
    rest = struct.pack("<IQ", len(head), len(blobs) if blob_len is None else blob_len) + head + blobs
    path.write_bytes(b"probelint-index\0" + struct.pack("<I", zlib.crc32(rest)) + rest)


@pytest.mark.parametrize("tree", [
    [1, 2, 3],
    {"symbols": "not a table"},
    {"symbols": {"names": {"$": "Q", "at": 0, "n": 1 << 40}}},
    {"raw_symbols": {"names": {"text": "a", "starts": {"$": "Q", "at": 0, "n": 2}}}},
    "deeply" + "[" * 100_000,
], ids=["list", "wrong-type", "huge-array", "starts-past-text", "deep-nesting"])
def test_a_crafted_index_of_the_wrong_shape_is_rebuilt(clean, capsys, tree):
    expected, cache = clean
    head = tree.encode() if isinstance(tree, str) else json.dumps(tree).encode()
    write_index(index_file(cache), head, bytes(16))
    assert_one_line(capsys, cache, expected, "discarded, rebuilt")
    assert verdicts(cache) == expected and not warnings(capsys)


def test_a_huge_declared_size_is_refused_before_it_is_allocated(clean, capsys):
    expected, cache = clean
    write_index(index_file(cache), b"{}", b"", blob_len=1 << 62)
    assert_one_line(capsys, cache, expected, "declares")


def test_wrong_index_values_are_rebuilt_not_a_crash(clean, capsys):
    """A well-formed index whose positions point beyond its tables (a type-correct lie)."""
    from probelint.image.cache_format import decode, encode

    expected, cache = clean
    index = index_file(cache)
    tree = decode(index.read_bytes())
    positions = tree["symbols"]["names_index"]["positions"] = array("I", tree["symbols"]["names_index"]["positions"])
    positions[0] = 1 << 31
    index.write_bytes(encode(tree))
    warnings(capsys)
    assert verdicts(cache) == expected
    assert len(warnings(capsys)) == 1


# ------------------------------------------------------------------ corruption: every flip is caught

@pytest.mark.parametrize("mapped", [False, True], ids=["read", "mapped"])
def test_every_byte_flip_of_the_index_is_caught(clean, capsys, monkeypatch, mapped):
    """Every byte of the header, then every 7th byte of the rest (the demo index is ~6 KB; each run
    loads the kernel again): the run rebuilds with one line, or gives exactly the clean output.
    Read as a small file is, and mapped as a real kernel's index (megabytes) is."""
    if mapped:
        monkeypatch.setattr("probelint.image.cachefs._MAP_FROM", 0)
    expected, cache = clean
    index = index_file(cache)
    good = index.read_bytes()
    positions = [*range(32), *range(32, len(good), 7)]
    warnings(capsys)
    for pos in positions:
        index.write_bytes(good[:pos] + bytes([good[pos] ^ 0xFF]) + good[pos + 1 :])
        assert verdicts(cache) == expected, pos
        assert len(warnings(capsys)) <= 1, pos
        index.write_bytes(good)


def test_every_byte_flip_of_the_fact_store_is_caught(clean, capsys):
    """Every 3rd byte of the fact store: a flip SQLite or the row checks notice discards the
    store (one line); one in unused space changes nothing; no flip changes a verdict."""
    expected, cache = clean
    facts = facts_file(cache)
    good = facts.read_bytes()
    warnings(capsys)
    for pos in range(0, len(good), 3):
        facts.write_bytes(good[:pos] + bytes([good[pos] ^ 0x5A]) + good[pos + 1 :])
        assert verdicts(cache) == expected, pos
        assert len(warnings(capsys)) <= 1, pos
        for extra in facts.parent.glob(facts.name + "-*"):
            extra.unlink()
        facts.write_bytes(good)
        facts.chmod(0o600)


def test_crafted_fact_rows_cannot_hide_a_kp104(clean, capsys):
    """demo_read+0x7 is inside a movabs (KP104). Rows rewritten to claim 1-byte instructions are
    refused by their checksum and the store is discarded: the error stays."""
    expected, cache = clean
    at = PROBES.index("demo_read+0x7")
    assert "KP104" in expected[at][4]
    facts = facts_file(cache)
    db = sqlite3.connect(facts)
    db.execute("UPDATE facts SET lengths = zeroblob(length(lengths)), branches = x'', indirect = x''")
    db.execute("UPDATE facts SET lengths = CAST(replace(CAST(lengths AS TEXT), char(0), char(1)) AS BLOB)")
    db.commit()
    db.close()
    assert_one_line(capsys, cache, expected, "fails its checks")


def test_a_foreign_sqlite_file_at_the_fact_store_name_is_discarded(clean, capsys):
    expected, cache = clean
    facts = facts_file(cache)
    facts.unlink()
    db = sqlite3.connect(facts)
    db.execute("CREATE TABLE facts (profile, address, data)")
    db.execute("CREATE TRIGGER t AFTER INSERT ON facts BEGIN DELETE FROM facts; END")
    db.commit()
    db.close()
    facts.chmod(0o600)
    assert_one_line(capsys, cache, expected, "not probelint's fact store")
    assert verdicts(cache) == expected and not warnings(capsys)


# ------------------------------------------------------------------ the cache is the user's

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@needs_root
@pytest.mark.parametrize("what", ["root", "index dir", "index file", "fact store"])
def test_a_cache_owned_by_another_user_is_refused(clean, capsys, what):
    expected, cache = clean
    target = {"root": cache, "index dir": cache / "index", "index file": index_file(cache),
              "fact store": facts_file(cache)}[what]
    before = {p: p.read_bytes() for p in (cache / "index").iterdir() if p.is_file()}
    os.chown(target, OTHER_UID, OTHER_UID)
    warnings(capsys)
    assert verdicts(cache) == expected
    (line,) = warnings(capsys)
    assert f"owned by uid {OTHER_UID}, not by you" in line
    assert {p: p.read_bytes() for p in (cache / "index").iterdir() if p.is_file()} == before  # nothing written


@pytest.mark.parametrize("what", ["root", "index dir", "index file"])
def test_a_cache_writable_by_group_is_refused(clean, capsys, what):
    expected, cache = clean
    target = {"root": cache, "index dir": cache / "index", "index file": index_file(cache)}[what]
    target.chmod(target.stat().st_mode | 0o020)
    index = index_file(cache)
    stamp = index.stat().st_mtime_ns
    assert_one_line(capsys, cache, expected, "writable by group or others")
    assert index.stat().st_mtime_ns == stamp


def test_new_cache_is_0700_and_its_files_0600_under_umask_002(tmp_path):
    old = os.umask(0o002)
    try:
        verdicts(tmp_path / "cache")
    finally:
        os.umask(old)
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "cache" / "index").stat().st_mode & 0o777 == 0o700
    files = list((tmp_path / "cache" / "index").iterdir())
    assert len(files) >= 2 and all(f.stat().st_mode & 0o777 == 0o600 for f in files)


# ------------------------------------------------------------------ links inside the cache are never followed

def test_a_symlinked_index_dir_is_not_followed(clean, tmp_path, capsys):
    expected, cache = clean
    elsewhere = tmp_path / "elsewhere"
    (cache / "index").rename(elsewhere)
    bid_name = next(elsewhere.iterdir()).name.split("-")[0]
    victim = elsewhere / f"{bid_name}-someone-elses-file"
    victim.write_text("keep me")
    (cache / "index").symlink_to(elsewhere)
    assert_one_line(capsys, cache, expected, "not followed")
    assert victim.read_text() == "keep me"


def test_a_symlinked_index_file_is_not_followed(clean, tmp_path, capsys):
    expected, cache = clean
    index = index_file(cache)
    target = tmp_path / "target"
    target.write_bytes(index.read_bytes())  # even a valid index is not read through a link
    index.unlink()
    index.symlink_to(target)
    before = target.read_bytes()
    assert_one_line(capsys, cache, expected, "symbolic link")
    assert target.read_bytes() == before and not index.is_symlink()


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlinked_fact_store_is_not_written_through(clean, tmp_path, capsys, dangling):
    expected, cache = clean
    facts = facts_file(cache)
    target = tmp_path / "someone.sqlite"
    if not dangling:
        db = sqlite3.connect(target)
        db.execute("CREATE TABLE precious (x)")
        db.commit()
        db.close()
    before = target.read_bytes() if not dangling else None
    facts.unlink()
    facts.symlink_to(target)
    warnings(capsys)
    assert verdicts(cache) == expected
    assert len(warnings(capsys)) == 1
    assert (target.read_bytes() == before) if not dangling else not target.exists()
    assert not facts.is_symlink()


def test_a_planted_temporary_name_is_not_written_through(tmp_path, monkeypatch):
    """The temporary name is random; planted at the name a run would draw, it is skipped."""
    directory = cachefs.CacheDir.open(tmp_path / "cache", "index")
    assert directory is not None
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    draws = iter([b"\x01" * 6, b"\x02" * 6])
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    os.symlink(victim, tmp_path / "cache" / "index" / f".tmp-name-{os.getpid()}-{'01' * 6}")
    directory.write("name", b"data")
    assert victim.read_text() == "keep me"
    assert (tmp_path / "cache" / "index" / "name").read_bytes() == b"data"


# ------------------------------------------------------------------ cache directory names

def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "probelint", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_an_empty_cache_dir_is_an_error_not_the_current_directory(tmp_path):
    done = run_cli("--cache-dir", "", str(DEMO / "demo.elf"), str(DEMO / "probes.txt"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["probelint: error: --cache-dir: an empty directory name (give a directory, "
                                        "or --no-cache)"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["x" * 300, "/".join(["d" * 200] * 25)], ids=["NAME_MAX", "PATH_MAX"])
def test_an_unusable_cache_dir_name_is_one_line(tmp_path, name):
    """A component beyond NAME_MAX, a path beyond PATH_MAX: one line, the run goes on uncached."""
    clean = run_cli("--no-cache", "--format", "json", str(DEMO / "demo.elf"), str(DEMO / "probes.txt"),
                    cwd=tmp_path)
    done = run_cli("--cache-dir", str(tmp_path / name), "--format", "json", str(DEMO / "demo.elf"),
                   str(DEMO / "probes.txt"), cwd=tmp_path)
    assert done.returncode == clean.returncode and done.stdout == clean.stdout
    (line,) = done.stderr.splitlines()
    assert line.startswith("probelint: warning: cache ") and "running without the cache" in line


def test_the_dwarf_lines_cache_checks_its_shape():
    from probelint.image.cache_format import IndexFormatError
    from probelint.readers.perf_lines import _FORMAT, _from_cache

    good = {"format": _FORMAT, "units": {"paths": ["a.c"], "units": [[0, "a.c", [0]]]},
            "results": [["f", None, 1, 0, False, [1, 2], None, False]]}
    _, results = _from_cache(good)
    assert next(iter(results.values())).addresses == (1, 2)
    for bad in ({**good, "units": {"paths": ["a.c"], "units": [[0, "a.c", [5]]]}},
                {**good, "results": [["f", None, "1", 0, False, [], None, False]]}, {**good, "format": 0}, []):
        with pytest.raises(IndexFormatError):
            _from_cache(bad)


def test_processes_creating_the_fact_store_at_once_do_not_discard_it(tmp_path):
    """A forked checker and its parent (or two runs) open a new, empty store at the same moment:
    one creates the table, the other must find it, not fail on it and throw the store away."""
    import multiprocessing

    from probelint.image.facts import FactStore

    def open_store(barrier, errors) -> None:
        directory = cachefs.CacheDir.open(tmp_path / "cache", "index")
        assert directory is not None
        store = FactStore(directory, "race.facts.sqlite")
        barrier.wait()
        if store._connect() is None or store._broken:
            errors.put("no store")

    ctx = multiprocessing.get_context("fork")
    for _ in range(5):
        for leftover in (tmp_path / "cache" / "index").glob("race*"):
            leftover.unlink()
        barrier, errors = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=open_store, args=(barrier, errors)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert errors.empty() and all(p.exitcode == 0 for p in procs)
