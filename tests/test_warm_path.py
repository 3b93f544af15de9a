"""What a warm run relies on: the packed index structures, the live-text patches kept in the fact
store, the struct-read ELF headers, and the command's exit without teardown."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys

import pytest

import probelint
from probelint.arch.x86 import decode as x86
from probelint.arch.x86.cpu import CpuProfile
from probelint.arch.x86.patching import patch_live_text
from probelint.errors import InputError
from probelint.image.cache_format import decode, encode
from probelint.image.elf import ElfFile
from probelint.image.facts import FunctionFacts, _differences, _pack, _row_crc, _unpack
from probelint.image.kallsyms import HashIndex, NameMap, PackedStrings
from probelint.image.kernel import Kernel
from tests.conftest import DEMO


def test_packed_strings_behave_as_a_sequence():
    names = ["vfs_read", "", "ksys_read.cold", "é_unicode", "x"]
    packed = PackedStrings.from_index(decode(encode(PackedStrings.of(names).to_index())))
    assert list(packed) == names and len(packed) == 5
    assert packed[-1] == "x" and packed[1:3] == ["", "ksys_read.cold"]
    with pytest.raises(IndexError):
        packed[5]
    with pytest.raises(IndexError):
        packed[-6]


def test_hash_index_candidates_are_a_superset_in_position_order():
    keys = [f"sym{k % 50}" for k in range(500)]
    index = HashIndex.from_index(decode(encode(HashIndex((key, pos) for pos, key in enumerate(keys)).to_index())), 500)
    for key in ("sym0", "sym49", "absent"):
        found = [pos for pos in index.candidates(key) if keys[pos] == key]
        assert found == [pos for pos, k in enumerate(keys) if k == key]
        assert list(index.candidates(key)) == sorted(index.candidates(key))


def test_name_map_after_the_index_format():
    items = {f"__marker_{k}": 0xFFFFFFFF81000000 + k for k in range(1000)}
    loaded = NameMap.from_index(decode(encode(NameMap(items).to_index())))
    assert all(loaded.get(name) == value for name, value in items.items())
    assert loaded.get("__marker_1000") is None and len(loaded) == 1000


def test_kallsyms_lookups_survive_the_index(tmp_path):
    """Every name and address lookup gives the same answer from the packed index as when built."""
    built = probelint.load_kernel([DEMO / "demo.elf"]).vmlinux
    probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True)  # writes the index
    loaded = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True).vmlinux
    assert type(loaded.symbols.names) is PackedStrings  # really from the index
    fresh, packed = built.symbols, loaded.symbols
    for name in {*fresh.names, "no_such_symbol"}:
        assert packed.lookup_name(name) == fresh.lookup_name(name), name
        assert packed.count(name) == fresh.count(name), name
        assert packed.pieces_of(name) == fresh.pieces_of(name), name
    for address in fresh.addresses:
        for probe in (address - 1, address, address + 1):
            assert packed.lookup(probe) == fresh.lookup(probe), hex(probe)
    for marker in ("_stext", "_etext", "_end", "__init_begin"):
        assert loaded.marker(marker) == built.marker(marker)


def test_differences_rebuild_the_live_bytes():
    rng = random.Random(7)
    for _ in range(200):
        old = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        new = bytearray(old)
        for _ in range(rng.randrange(12)):  # a module function's relocated fields: many runs
            at = rng.randrange(len(new))
            new[at : at + 5] = bytes(rng.randrange(256) for _ in range(len(new[at : at + 5])))
        facts = FunctionFacts(b"", (), (), (), False, _differences(old, bytes(new)))
        assert facts.live(old) == bytes(new)
        assert all(data and data != old[at : at + len(data)] for at, data in facts.patches)
        assert len(facts.patches) <= 4  # more runs are kept as one span: a warm read loops over each


@pytest.mark.kernel
def test_fact_store_keeps_the_live_text(debian_kernel: Kernel, tmp_path):
    """Functions with patched text (return thunks, alternatives, paravirt) come back from the fact
    store exactly as patch_live_text makes them, under two CPU profiles."""
    vmlinux = debian_kernel.vmlinux
    assert vmlinux is not None
    stext, etext = vmlinux.marker("_stext"), vmlinux.marker("_etext")
    funcs = [s for s in vmlinux.symbols.symbols_in(stext, etext) if s.type in "tT" and s.size > 16]
    sample = random.Random(3).sample(funcs, 150)
    patched = 0
    for profile in (CpuProfile.QEMU64, CpuProfile.EPYC_ROME):
        for sym in sample:
            file_code = vmlinux.read(sym.address, sym.size + x86.MAX_INSN_SIZE)
            live = patch_live_text(vmlinux, sym.address, file_code, profile)
            insns = list(x86.decode(live, sym.address))
            facts = FunctionFacts.of(insns, file_code, live)
            row = _pack(facts)
            stored = _unpack(profile.cache_key, sym.address, file_code,
                             (*row, _row_crc(profile.cache_key, sym.address, file_code, row)))
            assert stored == facts
            assert stored.live(file_code) == live, sym.name
            patched += bool(facts.patches)
    assert patched > 50  # most functions end in a patched return


def test_elf_header_errors_name_the_problem(tmp_path):
    demo = (DEMO / "demo.elf").read_bytes()
    elf32 = bytearray(demo)
    elf32[4] = 1  # ELFCLASS32
    elf32[18:20] = (3).to_bytes(2, "little")  # EM_386
    (tmp_path / "i386.elf").write_bytes(elf32)
    with pytest.raises(InputError, match="unsupported architecture EM_386"):
        ElfFile(tmp_path / "i386.elf")
    arm = bytearray(demo)
    arm[18:20] = (183).to_bytes(2, "little")
    (tmp_path / "arm64.elf").write_bytes(arm)
    with pytest.raises(InputError, match="unsupported architecture EM_AARCH64"):
        ElfFile(tmp_path / "arm64.elf")
    shoff = int.from_bytes(demo[40:48], "little")
    (tmp_path / "cut.elf").write_bytes(demo[: shoff + 10])
    with pytest.raises(InputError, match="corrupt ELF: section header table outside the file"):
        ElfFile(tmp_path / "cut.elf")
    odd = bytearray(demo)
    odd[58:60] = (40).to_bytes(2, "little")  # e_shentsize
    (tmp_path / "shentsize.elf").write_bytes(odd)
    with pytest.raises(InputError, match="40-byte section headers"):
        ElfFile(tmp_path / "shentsize.elf")
    names = bytearray(demo)
    names[62:64] = (500).to_bytes(2, "little")  # e_shstrndx
    (tmp_path / "shstrndx.elf").write_bytes(names)
    with pytest.raises(InputError, match="section names in section 500"):
        ElfFile(tmp_path / "shstrndx.elf")


def test_command_exit_runs_exit_handlers(tmp_path):
    """The command skips interpreter teardown; the fact store is still written at exit."""
    probes = tmp_path / "probes.txt"
    probes.write_text("demo_read+0x5\ndemo_read+0x7\n")
    proc = subprocess.run([sys.executable, "-m", "probelint", "--cache-dir", str(tmp_path), "--format", "json",
                           str(DEMO / "demo.elf"), str(probes)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and '"EILSEQ"' in proc.stdout  # +0x7 is inside an instruction
    (store,) = (tmp_path / "index").glob("*.facts.sqlite")
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM facts").fetchone()[0] >= 1



def test_table_columns_from_the_index_match_the_table(tmp_path, build_kernel):
    """A warm run reads single fields of the indexed tables as columns, never building a dict per
    entry; the columns are the table's fields, in its order, before and after the table is built."""
    from tests.rules.test_kp404_kp405_runtime_branches import SOURCE

    elf = build_kernel(SOURCE + "    JUMP_LABEL 2b\n")
    probelint.load_kernel([elf], cache_dir=tmp_path, cache=True)  # writes the index
    image = probelint.load_kernel([elf], cache_dir=tmp_path, cache=True).vmlinux
    assert len(image._indexed_tables["jump_table"][1][0]) == 2  # the two jump labels, indexed as columns
    codes, targets = image.table_columns("jump_table", "code", "target")
    assert "jump_table" not in image._tables  # answered from the columns
    entries = image.table("jump_table")
    assert list(codes) == [e["code"] for e in entries] and list(targets) == [e["target"] for e in entries]
    assert [list(c) for c in image.table_columns("jump_table", "code", "target")] == [list(codes), list(targets)]
    assert image.jump_label_target(codes[1]) == targets[1]


def test_decoder_loads_without_the_iced_package_init():
    """A warm run imports iced-x86's native decoder alone (arch/x86/iced.py); what it reads from
    iced's files must be what the full package defines, and a later full import reuses its classes."""
    probe = ("import sys; from probelint.arch.x86 import iced as fast; assert 'iced_x86' not in sys.modules;"
             "import iced_x86 as full;"
             "assert fast.Decoder is full.Decoder and fast.Formatter is full.Formatter;"
             "assert fast.INVALID_CODE == full.Code.INVALID and fast.UD0 == full.Mnemonic.UD0;"
             "assert fast.NO_INVALID_CHECK == full.DecoderOptions.NO_INVALID_CHECK;"
             "assert fast.GAS == full.FormatterSyntax.GAS;"
             "assert fast.UNCONDITIONAL_BRANCH == full.FlowControl.UNCONDITIONAL_BRANCH;"
             "assert fast.CONDITIONAL_BRANCH == full.FlowControl.CONDITIONAL_BRANCH")
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_change_detections_come_from_the_index(tmp_path, build_kernel, monkeypatch):
    """A warm run answers the change table's detectors from the index (unique-symbol alone scans
    .rodata); the answers are the detectors' own, and a malformed entry makes the index rebuilt."""
    from probelint.image import changes
    from probelint.image.base import _detections_from_index
    from probelint.image.cache_format import IndexFormatError
    from tests.rules.test_kp404_kp405_runtime_branches import SOURCE

    elf = build_kernel(SOURCE + "FUNC register_kprobe\n    ret\nFUNC validate_probe_symbol\n    ret\n")
    cold = probelint.load_kernel([elf], cache_dir=tmp_path, cache=True).vmlinux
    expected = {change: changes.CHANGES[change].detect(cold) for change in changes.DETECTED}
    def asked(image: object) -> None:
        raise AssertionError("a detector ran on a warm run")

    for change in changes.DETECTED:
        monkeypatch.setitem(changes.CHANGES, change, changes.CHANGES[change]._replace(detect=asked))
    warm = probelint.load_kernel([elf], cache_dir=tmp_path, cache=True)
    assert warm.vmlinux.detections == expected and any(found is not None for found in expected.values())
    assert all(warm.change(c) == changes.applies(c, cold, warm.version) for c in changes.DETECTED)
    for bad in ({}, {c: [1, "x"] for c in changes.DETECTED}, {c: "yes" for c in changes.DETECTED}):
        with pytest.raises(IndexFormatError):
            _detections_from_index(bad)


def test_hash_index_never_returns_a_position_beyond_its_table():
    """Positions at or above 2**24 make the index malformed (rebuilt); one between the table's
    length and that is skipped when looked up, never an IndexError."""
    from array import array

    from probelint.image.cache_format import IndexFormatError

    keys = [f"sym{k}" for k in range(100)]
    tree = decode(encode(HashIndex((key, pos) for pos, key in enumerate(keys)).to_index()))
    lied = {"crcs": tree["crcs"], "positions": array("I", tree["positions"])}
    first = keys[lied["positions"][0]]
    lied["positions"][0] = 5000
    index = HashIndex.from_index(decode(encode(lied)), 100)
    assert 5000 not in index.candidates(first)
    lied["positions"][0] = 1 << 24
    with pytest.raises(IndexFormatError):
        HashIndex.from_index(decode(encode(lied)), 100)


def test_help_is_wrapped_as_argparse_wraps_it_without_importing_shutil(tmp_path):
    """The command's formatter asks the width once ($COLUMNS, else the terminal, else 80) where
    argparse's imports shutil (bz2, lzma) for every option; a lint run imports neither shutil
    nor tempfile (only a run that writes a file does)."""
    import os

    def help_text(columns: str, stock: bool = False) -> str:
        code = ("import argparse, probelint.cli as c;" + ("c._HelpFormatter = argparse.HelpFormatter;" * stock)
                + "c._parser().print_help()")
        return subprocess.run([sys.executable, "-c", code], env={**os.environ, "COLUMNS": columns},
                              capture_output=True, text=True, check=True).stdout

    assert help_text("60") == help_text("60", stock=True) != help_text("200")
    probes = tmp_path / "p.txt"
    probes.write_text("demo_target\n")
    # import statements are watched, not sys.modules: a site-packages hook may have loaded both
    run = ("import builtins, sys; seen = set(); real = builtins.__import__\n"
           "def watch(name, *args, **kwargs):\n"
           "    seen.add(name)\n"
           "    return real(name, *args, **kwargs)\n"
           "builtins.__import__ = watch\n"
           "from probelint import cli\n"
           "cli.main(['--no-cache', *sys.argv[1:]])\n"
           "assert not seen & {'shutil', 'tempfile'}, seen & {'shutil', 'tempfile'}")
    subprocess.run([sys.executable, "-c", run, str(DEMO / "demo.elf"), str(probes)], check=True,
                   capture_output=True)
