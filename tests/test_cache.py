"""The build-id index: a warm run gives the same verdicts without re-reading the symbol table."""

import probelint
from probelint.image.elf import ElfFile
from tests.conftest import DEMO

PROBES = [line.split("#")[0].strip() for line in (DEMO / "probes.txt").read_text().splitlines()]
PROBES = [p for p in PROBES if p]


def verdicts(results):
    return [(r.verdict.registers, r.verdict.errno, r.verdict.optimized, r.verdict.ftrace,
             [f.message for f in r.findings]) for r in results]


def test_warm_run_matches_cold_and_skips_the_symbol_table(tmp_path, monkeypatch):
    cold = probelint.check(probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True), PROBES)
    assert list((tmp_path / "index").glob("*.pickle"))

    def no_symtab(self):
        raise AssertionError("a warm run must not parse .symtab")

    monkeypatch.setattr(ElfFile, "symbols", no_symtab)
    warm = probelint.check(probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True), PROBES)
    assert verdicts(warm) == verdicts(cold)


def test_corrupt_index_is_rebuilt(tmp_path):
    probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True)
    (index,) = (tmp_path / "index").glob("*.pickle")
    index.write_bytes(b"garbage")
    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True)
    assert probelint.check(kernel, ["demo_read+0x7"])[0].verdict.errno == "EILSEQ"
    assert index.read_bytes() != b"garbage"
