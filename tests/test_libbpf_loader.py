"""libbpf programs as their loader uses them: the user-space X.c beside X.bpf.c (bcc
libbpf-tools' layout) attaches programs itself, switches their autoload, under trace_helpers'
guards; fixtures in tests/data/libbpf-tools are written in that style."""

import json
import shutil
import subprocess
import sys

from probelint.readers import extract
from probelint.readers.libbpf_loader import read_loader
from tests.conftest import DEMO, ROOT

DATA = ROOT / "tests" / "data" / "libbpf-tools"


def probes(path):
    return extract(str(path), path.read_text())


def row(p):
    return (type(p).__name__, p.text, p.location.file.rsplit("/", 1)[-1], (p.location.line, p.location.column),
            getattr(p, "is_return", None), p.origin.arm, p.origin.sufficient)


def test_loader_targets_replace_the_sec_names():
    """bpf_program__attach_kprobe[_opts|_multi_opts] in the loader: its targets, at their strings
    (not the one in a comment), retprobe from the call or its opts; a guarded pair is two branches;
    a target from a table is not checked (KP407), at its argument."""
    found = probes(DATA / "demolat.bpf.c")
    assert [row(p) for p in found] == [
        ("ProbeSpec", "__demo_read_start", "demolat.c", (16, 85), False, 0, True),
        ("ProbeSpec", "demo_read", "demolat.c", (18, 85), False, 1, False),
        ("ProbeSpec", "demo_read", "demolat.c", (20, 11), True, None, False),
        ("ProbeSpec", "demo_write", "demolat.c", (22, 84), False, None, False),  # SEC("kprobe"): the loader's
        ("ProbeSpec", "demo_*", "demolat.c", (24, 84), True, None, False),  # mopts.retprobe = true
        ("ParseProblem", "op_funcs[op]", "demolat.c", (25, 78), None, None, False)]
    assert found[-1].unsupported and found[4].is_glob
    assert found[0].origin.optional and found[1].origin.optional is None  # the else runs where the guard fails
    assert found[0].origin.alternatives == found[1].origin.alternatives is not None
    assert all(p.origin.tool == "libbpf" and p.origin.loader for p in found)


def test_autoload_switched_by_the_loader():
    """set_autoload(P, false) for good (or SEC("?...") never switched on): not used; under
    kprobe_exists, the programs of the branches are alternatives (the else that gives up loads
    nothing); under fentry_can_attach the kprobe program is optional; set_attach_target does not
    move a kprobe: its SEC() name stays, with a note."""
    found = probes(DATA / "demoslab.bpf.c")
    assert [(p.symbol, p.origin.arm, p.origin.sufficient, p.origin.optional is not None, p.origin.unused is not None,
             p.origin.loader is not None) for p in found] == [
        ("__demo_alloc", 0, True, True, False, False), ("demo_write", 1, True, True, False, False),
        ("demo_fsync", None, False, True, False, False), ("demo_flush", None, False, False, True, False),
        ("demo_notrace", None, False, False, True, False), ("dummy_read", None, False, False, False, True)]
    assert "demoslab.c:24" in found[3].origin.unused and "SEC(\"?...\")" in found[4].origin.unused
    assert "does not move a kprobe" in found[5].origin.loader


def lint(*paths):
    proc = subprocess.run([sys.executable, "-m", "probelint", str(DEMO / "demo.elf"), *map(str, paths),
                           "--format", "json"], capture_output=True, text=True, cwd=ROOT)
    return [(p["file"].rsplit("/", 1)[-1], p["line"], sorted((f["rule"], f["severity"]) for f in p["findings"]
                                                             if f["rule"] not in ("KP201", "KP409", "KP406")))
            for p in json.loads(proc.stdout)["probes"]]


def test_no_error_for_what_the_loader_skips():
    """Only what the tool itself fails on stays an error: the blacklisted match of kprobe.multi,
    the SEC() dummy that set_attach_target does not move."""
    assert lint(DATA / "demolat.bpf.c", DATA / "demoslab.bpf.c") == [
        ("demolat.c", 16, [("KP411", "info")]), ("demolat.c", 18, [("KP411", "info")]),
        ("demolat.c", 20, [("KP411", "info")]), ("demolat.c", 22, [("KP411", "info")]),
        ("demolat.c", 24, [("KP106", "error"), ("KP411", "info")]), ("demolat.c", 24, []),  # said once a wildcard
        ("demolat.c", 24, []), ("demolat.c", 25, [("KP407", "warning"), ("KP411", "info")]),
        ("demoslab.bpf.c", 7, [("KP411", "info")]), ("demoslab.bpf.c", 13, []),
        ("demoslab.bpf.c", 19, [("KP411", "info")]), ("demoslab.bpf.c", 31, [("KP411", "info")]),
        ("demoslab.bpf.c", 37, [("KP411", "info")]), ("demoslab.bpf.c", 43, [("KP101", "error"), ("KP411", "info")])]
    text = subprocess.run([sys.executable, "-m", "probelint", str(DEMO / "demo.elf"), str(DATA / "demoslab.bpf.c"),
                           "--show-info"], capture_output=True, text=True, cwd=ROOT).stdout
    assert "2 not used by their tool" in text
    assert "not used: its autoload is switched off at demoslab.c:24 and never switched on" in text


def test_without_a_loader_every_sec_is_checked_as_written(tmp_path):
    shutil.copy(DATA / "demoslab.bpf.c", tmp_path)
    found = probes(tmp_path / "demoslab.bpf.c")
    assert [p.symbol for p in found] == ["__demo_alloc", "demo_write", "demo_fsync", "demo_flush", "demo_notrace",
                                         "dummy_read"]
    assert all(p.origin.optional is None and p.origin.unused is None and p.origin.arm is None for p in found)


def test_loader_scanner_keeps_strings_and_skips_comments():
    text = ('const char *url = "https://x//y(";  /* if (kprobe_exists("a")) */\n'
            'if (!kprobe_exists("f")) {\n\tbpf_program__set_autoload(skel->progs.p, false);\n}\n'
            'bpf_program__attach_kprobe(prog, false, "g");\n')
    loader = read_loader("x.c", text)
    first, second = loader.calls
    assert (first.program, first.arm.negated, first.arm.guard) == ("p", True, ("f", "kprobe_exists"))
    assert second.program is None and second.arm is None and loader.literal(second, 2)[0] == "g"
    assert len({a.chain for a in loader.arms}) == 1  # the `if` in the comment is none
