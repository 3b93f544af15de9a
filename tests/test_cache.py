"""The build-id index: a warm run gives the same verdicts without re-reading the symbol table."""


import probelint
from probelint.arch.x86 import decode as x86
from probelint.image.elf import ElfFile
from probelint.image.kernel import LazyInsns
from tests.conftest import DEMO

PROBES = [line.split("#")[0].strip() for line in (DEMO / "probes.txt").read_text().splitlines()]
PROBES = [p for p in PROBES if p]


def verdicts(results):
    return [(r.verdict.registers, r.verdict.errno, r.verdict.optimized, r.verdict.ftrace,
             [f.message for f in r.findings]) for r in results]


def test_warm_run_matches_cold_and_skips_the_symbol_table(tmp_path, monkeypatch):
    cold = probelint.check(probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True), PROBES)
    assert list((tmp_path / "index").glob("*.index"))

    def no_symtab(self):
        raise AssertionError("a warm run must not parse .symtab")

    monkeypatch.setattr(ElfFile, "symbols", no_symtab)
    warm = probelint.check(probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True), PROBES)
    assert verdicts(warm) == verdicts(cold)


def test_a_warm_wildcard_walks_no_symbol_table(tmp_path, monkeypatch):
    """available_filter_functions (and what bcc's event_re drops of it) comes from the index: a
    warm wildcard matches what the cold one did without listing the kernel's symbols."""
    from probelint.image.kallsyms import SymbolTable

    script = tmp_path / "demo.bt"
    script.write_text("kprobe:demo_* { @[probe] = count(); }\n")
    bcc = tmp_path / "demo.py"
    bcc.write_text('from bcc import BPF\nb = BPF(text="")\nb.attach_kprobe(event_re="^demo_.*", fn_name="f")\n')
    files = [script, bcc]
    cold = probelint.check(probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True), files=files,
                           hints="never")
    assert len(cold) > 4

    def no_walk(self, start, end):
        raise AssertionError("a warm wildcard must not walk the symbol table")

    monkeypatch.setattr(SymbolTable, "symbols_in", no_walk)
    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True)
    assert kernel.vmlinux is not None and kernel.vmlinux.traceable.names
    warm = probelint.check(kernel, files=files, hints="never")
    assert [r.spec.text for r in warm] == [r.spec.text for r in cold] and verdicts(warm) == verdicts(cold)


def test_corrupt_index_is_rebuilt(tmp_path):
    probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True)
    (index,) = (tmp_path / "index").glob("*.index")
    index.write_bytes(b"garbage")
    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True)
    assert probelint.check(kernel, ["demo_read+0x7"])[0].verdict.errno == "EILSEQ"
    assert index.read_bytes() != b"garbage"


def _insn_fields(insns):
    return [(i.address, i.length, i.raw, i.valid, i.emulate_prefix, str(i.decoded)) for i in insns]


def test_warm_run_decodes_only_the_instructions_it_reads(tmp_path, monkeypatch):
    """Per-function facts (boundaries, branches, indirect jumps) come from the fact store; a warm
    run never walks a whole function, and its instructions equal a fresh walk's."""
    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True)
    cold = probelint.check(kernel, PROBES)
    image = kernel.vmlinux
    syms = [s for s in image.symbols.symbols_in(0, 1 << 64) if s.type in "tT"]
    walked = {s.address: _insn_fields(image.function(s).insns) for s in syms}
    image.save_facts()
    assert list((tmp_path / "index").glob("*.facts.sqlite"))

    def no_walk(*args, **kwargs):
        raise AssertionError("a warm run must not walk whole functions")

    monkeypatch.setattr(x86, "decode", no_walk)
    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True)
    assert verdicts(probelint.check(kernel, PROBES)) == verdicts(cold)
    image = kernel.vmlinux
    for sym in syms:
        fn = image.function(sym)
        assert isinstance(fn.insns, LazyInsns)
        assert _insn_fields(fn.insns) == walked[sym.address], sym.name


def test_unusable_fact_store_only_costs_time(tmp_path):
    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True)
    expected = verdicts(probelint.check(kernel, PROBES))
    kernel.vmlinux.save_facts()
    (store,) = (tmp_path / "index").glob("*.facts.sqlite")
    store.write_bytes(b"not a database" * 100)
    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True)
    assert verdicts(probelint.check(kernel, PROBES)) == expected
    kernel.vmlinux.save_facts()


def test_forked_worker_opens_its_own_fact_store(tmp_path):
    """A connection opened before fork() is never used by the child (SQLite forbids it)."""
    import multiprocessing

    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True)
    probelint.check(kernel, PROBES)
    kernel.vmlinux.save_facts()  # the parent's connection is open now
    parent_db = kernel.vmlinux._facts._db
    assert parent_db is not None

    def child(queue):
        store = kernel.vmlinux._facts
        fresh = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=tmp_path, cache=True)
        verdicts_child = verdicts(probelint.check(fresh, PROBES))
        store._connect()
        queue.put((store._db is not parent_db, verdicts_child))

    queue = multiprocessing.get_context("fork").Queue()
    proc = multiprocessing.get_context("fork").Process(target=child, args=(queue,))
    proc.start()
    own_connection, child_verdicts = queue.get(timeout=60)
    proc.join(60)
    assert own_connection and child_verdicts == verdicts(probelint.check(kernel, PROBES))


def test_cache_dir_that_cannot_be_created_only_costs_time(tmp_path):
    """--cache-dir naming a file (or a path under one) must not fail the run: no index, no facts."""
    expected = verdicts(probelint.check(probelint.load_kernel([DEMO / "demo.elf"], cache=False), PROBES))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    kernel = probelint.load_kernel([DEMO / "demo.elf"], cache_dir=blocker / "cache", cache=True)
    assert verdicts(probelint.check(kernel, PROBES)) == expected
    kernel.vmlinux.save_facts()
