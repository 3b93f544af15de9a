"""Probes read where users keep them: bpftrace, libbpf, shell scripts, whole trees."""

import json
import subprocess
import sys

import probelint
import probelint.engine
from probelint.readers import SourceLineProbe, detect_kind, extract
from probelint.readers.spec import ProbeSpec
from probelint.resolve import expand_globs, resolve_source_lines
from tests.conftest import DEMO, ROOT

DATA = ROOT / "tests" / "data" / "sources"


def probes(name):
    path = DATA / name
    return extract(str(path), path.read_text())


def where(item):
    return (item.location.line, item.location.column)


def test_kinds_by_extension_and_shebang():
    assert detect_kind("a.bt", "") == "bpftrace"
    assert detect_kind("x", "#!/usr/bin/env bpftrace\n") == "bpftrace"
    assert detect_kind("p.bpf.c", "") == "libbpf"
    assert detect_kind("run", "#!/bin/bash\n") == "shell"
    assert detect_kind("probes.txt", "vfs_read\n") == "list"


def test_bpftrace_headers_only():
    found = probes("trace.bt")
    assert [(p.text, where(p)) for p in found] == [("demo_read+0x7", (3, 8)), ("demo_write", (4, 11)),
                                                    ("demo_*", (9, 8))]
    assert found[1].is_return and found[2].is_glob  # nothing from comments, blocks or strings


def test_libbpf_sections():
    found = probes("prog.bpf.c")
    assert [(p.text, p.is_return, where(p)) for p in found] == [
        ("demo_read+0x6", False, (1, 13)), ("demo_write", True, (3, 16)), ("show*", False, (5, 19))]


def test_shell_lines():
    found = probes("setup.sh")
    texts = [p.text for p in found]
    assert texts == ["demo_read+0x7", "demo_write+5", "demo_read%return", "xfs:xfs_buf_read_map", "demo.c:42",
                     "demo_read+3"]
    assert where(found[0]) == (2, 16) and where(found[5]) == (6, 21)
    assert isinstance(found[4], SourceLineProbe) and found[4].point.line == 42  # resolved with the kernel
    assert found[3].module == "xfs"


def test_wildcards_expand_to_traceable_functions():
    kernel = probelint.load_kernel([DEMO / "demo.elf"])
    expanded = expand_globs(kernel, probes("trace.bt"))
    names = [p.symbol for p in expanded if isinstance(p, ProbeSpec)]
    assert names[2:] == ["demo_nmi_handler", "demo_read", "demo_write"]  # demo_notrace has no ftrace site
    globs = {p.expanded_from for p in expanded if isinstance(p, ProbeSpec) and p.expanded_from is not None}
    assert [g.text for g in globs] == ["demo_*"]


def test_tree_through_the_cli():
    proc = subprocess.run([sys.executable, "-m", "probelint", "--format", "json", str(DEMO / "demo.elf"), str(DATA)],
                          capture_output=True, text=True, cwd=ROOT)
    data = json.loads(proc.stdout)
    files = {p["file"].rsplit("/", 1)[-1] for p in data["probes"]}
    assert files == {"trace.bt", "prog.bpf.c", "setup.sh"}
    kp406 = [f["message"] for p in data["probes"] for f in p["findings"] if f["rule"] == "KP406"]
    assert any("demo_* matches 3 traceable functions; 1 would fail: demo_nmi_handler" in m for m in kp406)


def test_perf_source_line_probe_without_dwarf_is_reported_not_checked():
    kernel = probelint.load_kernel([DEMO / "demo.elf"])
    results = probelint.engine.check_probes(kernel, resolve_source_lines(kernel, probes("setup.sh")))
    unchecked = results[4]
    assert [f.rule for f in unchecked.findings] == ["KP407"] and unchecked.verdict.registers is None
    assert "no DWARF" in unchecked.findings[0].message and where(unchecked.spec) == (5, 13)
