"""The probes' stored results (probelint/result_cache.py): a warm run reports exactly what a run
without the cache does, a key input that changes is a new key, and a stored row is checked, never
trusted."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import probelint
from probelint import engine
from probelint.findings import Severity
from probelint.image import cachefs
from probelint.readers.spec import parse_text
from probelint.result_cache import ResultStore, probe_key
from tests.conftest import DEMO, ROOT

PROBES = [p for line in (DEMO / "probes.txt").read_text().splitlines() if (p := line.split("#")[0].strip())]


def cli(cache: Path | None, *args: str) -> tuple[int, str, str]:
    where = ["--no-cache"] if cache is None else ["--cache-dir", str(cache)]
    done = subprocess.run([sys.executable, "-m", "probelint", *where, *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "100"})
    return done.returncode, done.stdout, done.stderr


def stored_rows(cache: Path) -> list[tuple[str, str, int]]:
    rows = []
    for store in (cache / "results").glob("*.results.sqlite"):
        db = sqlite3.connect(store)
        rows += db.execute("SELECT probe, value, crc FROM results").fetchall()
        db.close()
    return rows


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github", "gitlab"])
def test_a_warm_run_reports_what_a_run_without_the_cache_does(tmp_path, fmt):
    args = ("--format", fmt, "--hints", "always", str(DEMO / "demo.elf"), str(DEMO / "probes.txt"))
    uncached = cli(None, *args)
    cold = cli(tmp_path / "cache", *args)
    assert stored_rows(tmp_path / "cache")
    warm = cli(tmp_path / "cache", *args)
    assert uncached == cold == warm


@pytest.mark.kernel
def test_a_real_kernel_and_module_sample_reads_back_exactly(debian, tmp_path):
    """Probes of every kind the sampler draws on the Debian kernel and xfs.ko, with the set rules
    (windows, duplicates) over cached and fresh results mixed: the JSON report, byte for byte."""
    sample = ROOT / "tests" / "data" / "sample-6.1-xfs-seed7.txt"
    lines = [line.split("#")[0].strip() for line in sample.read_text().splitlines()]
    probes = tmp_path / "probes.txt"
    probes.write_text("\n".join(line for line in lines if line) + "\n")
    args = ("--format", "json", str(debian.vmlinux), str(debian.xfs), str(probes))
    uncached = cli(None, *args)
    cache = tmp_path / "cache"
    assert cli(cache, *args) == uncached
    assert cli(cache, *args) == uncached
    # half of the probes new: stored and checked results in one set
    probes.write_text("\n".join(line + " " for line in lines if line) + "\n")
    assert cli(cache, *args)[1].replace(" \n", "\n") == uncached[1]


def test_a_warm_run_checks_nothing_again(tmp_path, monkeypatch):
    """Not a vacuous equality: once stored, no probe of the set reaches a rule again, but those
    KP101 refused (its did-you-mean reads the module tree, which the key does not cover)."""
    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path / "cache", cache=True)
    probes = [*PROBES, "no_such_function"]

    def outcome() -> list[tuple]:
        return [(r.spec.text, r.verdict.registers, r.verdict.errno, r.verdict.optimized, sorted(r.fired),
                 [f.message for f in r.findings]) for r in probelint.check(kernel, probes, hints="never")]

    first = outcome()
    unknown = [text for text, *_, fired, _ in first if "KP101" in fired]
    assert "no_such_function" in unknown and len(unknown) < len(probes) // 2
    checked: list[str] = []
    real = engine._check_one
    monkeypatch.setattr(engine, "_check_one", lambda ctx, *a: checked.append(ctx.spec.text) or real(ctx, *a))
    assert outcome() == first
    assert checked == unknown


def test_every_input_of_a_result_is_in_its_key(tmp_path, build_kernel):
    """Each thing `_check_one` reads besides the probe changes the store's name: the CPU profile,
    the .config, the rules reported and their severities, the modules and whether one is arriving,
    the modules known not loaded, probelint's own code."""
    build_id = ('    .section .note.gnu.build-id, "a"\n    .long 4, 20, 3\n    .asciz "GNU"\n'
                "    .byte " + ", ".join(str(n) for n in range(20)) + "\n")  # what ld --build-id writes
    module = build_kernel("    .text\nFUNC mod_fn\n    push %rbp\n    pop %rbp\n    ret\n" + build_id, module=True)
    dotconfig = tmp_path / "config"
    dotconfig.write_text("CONFIG_OPTPROBES=y\n")
    cache = tmp_path / "cache"

    def name(*images: Path, select=None, severity=None, arriving=False, unloaded=(), **load) -> str:
        kernel = probelint.load_kernel([DEMO / "demo.elf", *images], cache_dir=cache, cache=True, **load)
        kernel.arrive([m.name for m in kernel.modules] if arriving else [])
        kernel.unloaded = frozenset(unloaded)
        store = ResultStore.open(kernel, engine.gate_for(select, severity))
        assert store is not None
        return store.name

    base = name()
    variants = [name(profile="EPYC-Rome"), name(dotconfig=dotconfig), name(select={"KP104"}),
                name(severity={"KP201": Severity.ERROR}), name(module), name(module, arriving=True),
                name(unloaded={"xfs"})]
    assert base == name()
    assert len({base, *variants}) == len(variants) + 1
    from probelint import result_cache

    result_cache._code_stamp.cache_clear()
    edited = ROOT / "probelint" / "checks" / "kp104_not_insn_boundary.py"
    stat = edited.stat()
    try:
        os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
        assert name() != base
    finally:
        os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        result_cache._code_stamp.cache_clear()


def test_no_store_without_a_key_for_everything():
    """A live system (its state is the running kernel's) and an image without an index key."""
    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache=False)
    assert ResultStore.open(kernel, engine.gate_for()) is None


def test_the_probe_key_is_every_field_and_stable_across_interpreters():
    (a,) = list(parse_text("demo_read+0x4 # probelint: ignore[KP201, KP104]", "x.txt"))
    (b,) = list(parse_text("\ndemo_read+0x4 # probelint: ignore[KP201, KP104]", "x.txt"))
    assert probe_key(a) != probe_key(b)  # another line: its findings say where
    code = ("from probelint.readers.spec import parse_text; from probelint.result_cache import probe_key; "
            "print(probe_key(next(parse_text('demo_read+0x4 # probelint: ignore[KP201, KP104, KP105]', 'x.txt'))))")
    keys = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                           capture_output=True, text=True, check=True, cwd=ROOT).stdout for seed in range(4)}
    assert len(keys) == 1


# ------------------------------------------------------------------ a stored row is checked, never trusted

@pytest.fixture
def stored(tmp_path):
    """The demo's JSON report without the cache, and a cache holding its results."""
    args = ("--format", "json", str(DEMO / "demo.elf"), str(DEMO / "probes.txt"))
    expected = cli(None, *args)
    cache = tmp_path / "cache"
    assert cli(cache, *args) == expected
    (store,) = (cache / "results").glob("*.results.sqlite")
    return expected, cache, store, args


def rewrite(store: Path, sql: str, *params: object) -> None:
    db = sqlite3.connect(store)
    db.execute(sql, params)
    db.commit()
    db.close()


def recrc(store: Path) -> None:
    """Give every row the checksum of what it now holds (a lie only the user could write)."""
    from probelint.result_cache import _crc

    db = sqlite3.connect(store)
    for probe, value in db.execute("SELECT probe, value FROM results").fetchall():
        db.execute("UPDATE results SET crc = ? WHERE probe = ?", (_crc(probe, value), probe))
    db.commit()
    db.close()


@pytest.mark.parametrize("damage", [
    "UPDATE results SET value = replace(value, 'true', 'false')",
    "UPDATE results SET value = substr(value, 2)",
    "UPDATE results SET probe = probe || ' '",
    "UPDATE results SET crc = crc + 1",
], ids=["verdict-flipped", "truncated", "another-probe", "checksum"])
def test_a_damaged_row_is_discarded_and_the_probes_checked_again(stored, damage):
    expected, cache, store, args = stored
    rewrite(store, damage)
    code, out, err = cli(cache, *args)
    assert (code, out) == expected[:2]
    if "probe ||" not in damage:  # a row under another probe's key is simply never asked for
        assert "a stored result fails its checks" in err and "discarded, rebuilt" in err and err.count("\n") == 1
    assert cli(cache, *args) == expected  # rebuilt: the next run is quiet


@pytest.mark.parametrize("value", [
    '[99,null,null,null,null,false,[true,null,true,false,[]],[],[],null]',  # an image the kernel lacks
    '[null,null,null,null,null,false,[true,null,true,false,["KP999"]],[],[],null]',  # an unknown rule
    '[null,null,"x",null,null,false,[true,null,true,false,[]],[],[],null]',  # an address of text
    '{"a": 1}', '[]', '[' * 5000,
], ids=["image", "rule", "type", "object", "empty", "deep"])
def test_a_row_of_the_wrong_shape_with_a_right_checksum_is_refused(stored, value):
    expected, cache, store, args = stored
    rewrite(store, "UPDATE results SET value = ?", value)
    recrc(store)
    code, out, err = cli(cache, *args)
    assert (code, out) == expected[:2]
    assert "fails its checks" in err and err.count("\n") == 1
    assert cli(cache, *args) == expected


def test_a_bad_row_after_good_ones_leaves_no_probe_half_restored(stored):
    """Rows are restored in key order; one that fails after others were taken must not leave
    those probes with a stored verdict to be checked again on top of."""
    expected, cache, store, args = stored
    db = sqlite3.connect(store)
    (last,) = db.execute("SELECT max(probe) FROM results").fetchone()
    db.close()
    refused = '[null,null,null,null,null,false,[false,"EILSEQ",false,false,["KP104"]],[],["KP104"],null]'
    rewrite(store, "UPDATE results SET value = ? WHERE probe <> ?", refused, last)
    rewrite(store, "UPDATE results SET value = '[]' WHERE probe = ?", last)
    recrc(store)
    code, out, err = cli(cache, *args)
    assert (code, out) == expected[:2] and "fails its checks" in err


def test_a_foreign_file_or_a_link_at_the_store_name_is_not_used(stored, tmp_path):
    expected, cache, store, args = stored
    store.unlink()
    db = sqlite3.connect(store)
    db.execute("CREATE TABLE results (probe TEXT, value TEXT, crc INTEGER)")  # not our schema exactly
    db.execute("INSERT INTO results VALUES ('x', 'y', 0)")
    db.commit()
    db.close()
    store.chmod(0o600)
    code, out, err = cli(cache, *args)
    assert (code, out) == expected[:2] and "not probelint's result store" in err
    target = tmp_path / "elsewhere.sqlite"
    target.write_bytes(b"")
    store.unlink()
    store.symlink_to(target)
    code, out, err = cli(cache, *args)
    assert (code, out) == expected[:2] and target.read_bytes() == b""
    cachefs._said.clear()


def test_the_store_is_the_users_alone(stored):
    _, cache, store, _ = stored
    assert (store.stat().st_mode & 0o777) == 0o600
    assert ((cache / "results").stat().st_mode & 0o777) == 0o700


def test_a_store_past_its_size_bound_is_started_again(stored, monkeypatch):
    """Rows of probes long gone pile up under a run key that stays the same: past the bound the
    file is removed and the probes checked (and stored) again."""
    from probelint import result_cache

    _, cache, store, _ = stored
    monkeypatch.setattr(result_cache, "_MAX_FILE", store.stat().st_size - 1)
    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=cache, cache=True)
    again = ResultStore.open(kernel, engine.gate_for())
    assert again is not None and again.name == store.name and not store.exists()


def test_verbose_says_how_many_results_were_taken(tmp_path):
    args = ("-v", str(DEMO / "demo.elf"), str(DEMO / "probes.txt"))
    said = [next(line for line in cli(tmp_path / "cache", *args)[2].splitlines() if "results" in line)
            for _ in range(2)]
    assert said[0].startswith("probelint: 0 of ") and "results taken from" in said[0]
    taken, total = map(int, said[1].split()[1:4:2])
    assert 0 < taken < total  # the KP101 ones are checked again
    assert "not kept" in next(line for line in cli(None, *args)[2].splitlines() if "results" in line)


def test_results_checked_by_forked_processes_are_kept_and_read_back(tmp_path):
    """A set large enough to be split between processes (-j 2): what the child checked comes back
    to the parent as plain data, is stored from there, and reads back as the parent's own."""
    lines = (DEMO / "probes.txt").read_text().splitlines()
    probes = tmp_path / "many.txt"
    probes.write_text("\n".join(lines * (600 // len(lines) + 1)) + "\n")
    args = ("-j", "2", "--format", "json", str(DEMO / "demo.elf"), str(probes))
    uncached = cli(None, *args)
    assert cli(tmp_path / "cache", *args) == uncached
    probed = sum(1 for line in probes.read_text().splitlines() if line.split("#")[0].strip())
    assert len(stored_rows(tmp_path / "cache")) > probed * 2 // 3  # the child's half is stored too
    assert cli(tmp_path / "cache", *args) == uncached
