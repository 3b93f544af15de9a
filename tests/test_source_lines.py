"""perf source-line probes (FILE:LINE, FUNC:RLN, FUNC@FILE[:RLN]) resolved through DWARF as perf does."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys

import pytest

from probelint.image.dwarf import strtailcmp
from probelint.readers import SourceLineProbe, detect_kind, extract
from probelint.readers.perf_lines import DwarfLines, PerfPoint
from probelint.readers.spec import ParseProblem, ProbeSpec
from probelint.readers.systemtap import BLOCKLIST, BLOCKLIST_RETURN
from probelint.resolve import resolve_source_lines
from tests.conftest import ROOT


def perf_points(script: str) -> list[object]:
    return extract("t.sh", script, "shell")


def test_perf_grammar_splits_files_functions_and_symbols():
    items = perf_points("perf probe -a 'fs/read_write.c:470' -a vfs_read:6 -a 'ev=vfs_read@fs/read_write.c:20' "
                        "-a vfs_write@fs/read_write.c+4 -a vfs_read+5 -a 'vfs_read@x.c%return' 'vfs_read;foo*'\n")
    points = [i.point if isinstance(i, SourceLineProbe) else i for i in items]
    assert points[0] == PerfPoint(None, "fs/read_write.c", 470)
    assert points[1] == PerfPoint("vfs_read", None, 6)
    assert points[2] == PerfPoint("vfs_read", "fs/read_write.c", 20)
    assert points[3] == PerfPoint("vfs_write", "fs/read_write.c", 0, 4)
    assert isinstance(points[4], ProbeSpec) and points[4].offset == 5  # symbol form: no DWARF needed
    assert isinstance(points[5], ProbeSpec) and points[5].is_return  # perf finds %return by symbol
    assert isinstance(points[6], ParseProblem) and points[6].unsupported  # lazy pattern: KP407
    assert [(i.location.line, i.location.column) for i in items][:2] == [(1, 16), (1, 40)]


def test_module_source_lines_and_bad_numbers_are_clear():
    module, bad = perf_points("perf probe -m xfs xfs_buf_read:3\nperf probe 'vfs_read:x'\n")
    assert isinstance(module, ParseProblem) and module.unsupported and "module" in module.message
    assert isinstance(bad, ParseProblem) and not bad.unsupported and bad.location.line == 2


def test_perf_command_line_is_parsed_as_perf_parses_it():
    """builtin-probe.c: -a/-D/--add=/-aSPEC each add one probe; the words after the options are
    one probe with its fetchargs; -d/-L/-V/-l/-F are other commands; -x probes user space."""
    def specs(script: str) -> list[tuple[str, int]]:
        return [(i.text, i.location.column) for i in perf_points(script)]

    assert specs("perf probe --add='fs/read_write.c:470' --add=vfs_write -avfs_read+4 -Dksys_read\n") == [
        ("fs/read_write.c:470", 19), ("vfs_write", 46), ("vfs_read+4", 58), ("ksys_read", 71)]
    (one,) = perf_points("perf probe vfs_read count buf:string\n")
    assert isinstance(one, ProbeSpec) and one.symbol == "vfs_read"
    (two,) = perf_points("perf probe 'ev=vfs_read:6' 'count'\n")
    assert isinstance(two, SourceLineProbe) and two.point == PerfPoint("vfs_read", None, 6)
    (mod,) = perf_points("perf probe --module=xfs xfs_buf_read:3\n")
    assert isinstance(mod, ParseProblem) and "module" in mod.message
    (mod_sym,) = perf_points("perf probe -mxfs xfs_buf_read\n")
    assert isinstance(mod_sym, ProbeSpec) and mod_sym.module == "xfs"
    for other in ("-d probe:vfs_read", "--del=probe:vfs_read", "-L vfs_read:3", "-V vfs_read", "-l", "-F 'vfs_*'",
                  "-x /bin/bash malloc", "--exec=/bin/bash malloc"):
        assert perf_points(f"perf probe {other}\n") == [], other


def test_strtailcmp_is_perfs():
    assert strtailcmp("fs/read_write.c", "read_write.c") and strtailcmp("read_write.c", "fs/read_write.c")
    assert not strtailcmp("fs/read_write.c", "fs/open.c")




@pytest.fixture(scope="module")
def lines(debian_kernel) -> DwarfLines:
    return DwarfLines(debian_kernel.vmlinux)


def named(kernel, resolution) -> list[str]:
    out = []
    for address in resolution.addresses:
        sym = kernel.vmlinux.symbols.lookup(address)
        out.append(f"{sym.name}+{address - sym.address}")
    return out


@pytest.mark.kernel
def test_lines_of_vfs_read_as_perf_resolves_them(lines, debian_kernel):
    # expectations printed by `perf probe -k VMLINUX -D ...` (perf 6.1.192, Debian 6.1.0-56 cloud)
    assert named(debian_kernel, lines.resolve(PerfPoint(None, "fs/read_write.c", 470))) == ["vfs_read+357"]
    assert named(debian_kernel, lines.resolve(PerfPoint("vfs_read", None, 6))) == ["vfs_read+49"]
    assert named(debian_kernel, lines.resolve(PerfPoint("vfs_read", "fs/read_write.c", 20))) == ["vfs_read+357"]
    assert named(debian_kernel, lines.resolve(PerfPoint("vfs_write", "fs/read_write.c"))) == ["vfs_write+0"]
    shared = lines.resolve(PerfPoint("vfs_read", None, 1))
    assert "shares its address" in shared.error and "vfs_read:0" in shared.error
    assert "not found" in lines.resolve(PerfPoint("vfs_read", None, 10)).error
    assert not lines.resolve(PerfPoint(None, "no/such_file.c", 3)).addresses


@pytest.mark.kernel
def test_resolved_lines_are_checked_by_every_rule(debian, debian_kernel, tmp_path):
    script = tmp_path / "t.sh"
    script.write_text("#!/bin/sh\nperf probe -a 'fs/read_write.c:470' 'fs/read_write.c:99999'\n")
    proc = subprocess.run([sys.executable, "-m", "probelint", "--no-cache", "--format", "json", str(debian.vmlinux),
                           str(script)], capture_output=True, text=True, cwd=ROOT)
    import json

    probes = json.loads(proc.stdout)["probes"]
    assert probes[0]["spec"] == "fs/read_write.c:470 -> vfs_read+0x165" and probes[0]["verdict"]["registers"]
    assert (probes[0]["line"], probes[0]["column"]) == (2, 16)
    assert probes[1]["findings"][0]["rule"] == "KP001" and "not found" in probes[1]["findings"][0]["message"]
    assert proc.returncode == 1 and not proc.stderr


def _compare_module():
    spec = importlib.util.spec_from_file_location("compare_perf_lines", ROOT / "scripts" / "compare_perf_lines.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.kernel
def test_agrees_with_perf_itself_on_a_sample(debian, debian_kernel):
    """A small live run of scripts/compare_perf_lines.py: perf's own -D output is the reference."""
    if shutil.which("perf") is None or subprocess.run(["perf", "probe", "--help"], capture_output=True).returncode > 1:
        pytest.skip("perf (Debian's linux-perf) is not installed")
    compare = _compare_module()
    report = compare.compare(debian_kernel, debian.vmlinux, count=24, seed=7)
    assert report.checked >= 20
    assert report.disagree == [], report.describe()


def test_systemtap_probe_points():
    text = ('#!/usr/bin/env stap\n# kprobe.function("commented_out")\n'
            'probe kprobe.function("vfs_read"), kprobe.function("vfs_*").return { }\n'
            'probe kernel.function("vfs_write").return { }\nprobe kernel.function("vfs_write") { }\n'
            'probe kernel.statement("vfs_read@fs/read_write.c:470") { }\nprobe kernel.statement("a.c:*") { }\n')
    assert detect_kind("x.stp", "") == "systemtap" and detect_kind("run", text) == "systemtap"
    items = extract("t.stp", text)
    assert [(i.symbol, i.is_return, i.is_glob) for i in items[:3]] == [
        ("vfs_read", False, False), ("vfs_*", True, True), ("vfs_write", True, False)]
    assert (items[0].location.line, items[0].location.column) == (3, 24)
    stap_write = PerfPoint("vfs_write", None, every_instance=True)  # SystemTap keeps every inlined copy
    assert items[3] == SourceLineProbe("vfs_write", items[3].location, stap_write, "systemtap", items[3].origin)
    assert {i.origin.path for i in items} == {"register_kprobe"}  # SystemTap calls register_kprobe() itself
    assert isinstance(items[4], SourceLineProbe) and items[4].point == PerfPoint(None, "fs/read_write.c", 470)
    assert isinstance(items[5], ParseProblem) and items[5].unsupported


@pytest.mark.kernel
def test_stripped_copy_sharing_a_build_id_never_reads_the_dwarf_copys_results(debian, tmp_path):
    """The source-line cache is keyed by build-id: a --strip-debug copy has the same one, but no
    DWARF, so it must say so warm as it does cold (and not write its refusals for the -dbg copy)."""
    if shutil.which("objcopy") is None:
        pytest.skip("objcopy (binutils) is needed")
    stripped = tmp_path / "vmlinux-stripped"
    subprocess.run(["objcopy", "--strip-debug", str(debian.vmlinux), str(stripped)], check=True)
    script = tmp_path / "t.sh"
    script.write_text("perf probe -a 'fs/read_write.c:470'\n")

    def run(image, *cache: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "probelint", *cache, "--format", "json", str(image), str(script)],
                              capture_output=True, text=True, cwd=ROOT)
        assert not proc.stderr
        return proc.stdout.replace(str(image), "IMAGE")

    cache = ["--cache-dir", str(tmp_path / "cache")]
    dwarf_cold = run(debian.vmlinux, *cache)
    assert run(stripped, *cache) == run(stripped, "--no-cache")
    assert "KP407" in run(stripped, *cache)
    assert run(debian.vmlinux, *cache) == dwarf_cold


def test_systemtap_comment_characters_in_strings_and_module_probes():
    """`#` inside a string starts no comment; module("M") functions are probed at M:F."""
    text = ('probe begin { x = "# not a comment" } probe kprobe.function("after_string") { }\n'
            'probe kprobe.function("a#b") { } // probe kprobe.function("commented")\n'
            'probe module("xfs").function("xfs_buf_read_map").return { }\n'
            'probe kprobe.module("xfs").function("xfs_buf_read_map") { }\n')
    items = extract("t.stp", text)
    assert [i.text if isinstance(i, ParseProblem) else i.symbol for i in items] == [
        "after_string", "a#b", "xfs_buf_read_map", "xfs_buf_read_map"]
    assert [(i.module, i.is_return) for i in items[2:]] == [("xfs", True), ("xfs", False)]
    assert (items[2].location.line, items[2].location.column) == (3, 31)


def test_systemtap_blocklist():
    """stap refuses kernel.function probes on its own blocklist ("semantic error: no match");
    do_exit is refused for .return only."""
    text = ('probe kernel.function("_raw_spin_lock") { }\nprobe kernel.function("do_exit").return { }\n'
            'probe kernel.function("do_exit") { }\nprobe kernel.function("atomic_notifier_call_chain").return { }\n'
            'probe kernel.function("vfs_*") { }\nprobe kernel.function("vfs_read@fs/read_write.c") { }\n')
    spin, exit_return, exit_entry, chain_return, wildcard, in_file = extract("t.stp", text)
    for refused in (spin, exit_return, chain_return):
        assert isinstance(refused, ParseProblem) and not refused.unsupported and "blocklist" in refused.message
    assert isinstance(exit_entry, SourceLineProbe)
    assert exit_entry.point == PerfPoint("do_exit", None, every_instance=True)
    assert isinstance(wildcard, ParseProblem) and wildcard.unsupported
    assert isinstance(in_file, SourceLineProbe)
    assert in_file.point == PerfPoint("vfs_read", "fs/read_write.c", every_instance=True)


@pytest.mark.kernel
def test_systemtap_function_entry_and_inlined_copies(debian_kernel):
    """kernel.function("F") is checked at F's out-of-line entry and at its inlined copies; a
    function inlined everywhere (no symbol) is not checked (KP407)."""
    items = extract("t.stp", 'probe kernel.function("vfs_write") { }\nprobe kernel.function("rw_verify_area") { }\n'
                             'probe kernel.function("fdget_pos") { }\n')
    entry, *copies, inlined = resolve_source_lines(debian_kernel, items)
    assert isinstance(entry, ProbeSpec) and (entry.symbol, entry.offset) == ("vfs_write", 0)
    assert sorted((c.symbol, c.offset > 0) for c in copies) == [("kernel_read", True), ("rw_verify_area", False)]
    assert isinstance(inlined, ParseProblem) and inlined.unsupported and "SystemTap" in inlined.message


def _stap_pcs(stap_output: str) -> set[int]:
    """Every probe address in `stap -vvv -p2` output (out-of-line entries and inlined copies)."""
    return {int(line.split(" pc=")[1].split()[0], 16) for line in stap_output.splitlines()
            if line.startswith("probe ") and " pc=0x" in line}


@pytest.fixture
def stap_build(debian, tmp_path):
    """A build tree holding only the -dbg vmlinux, as `stap -r` takes one (pass 2 needs no more)."""
    from probelint.vmtest.download import kernel_abi
    from tests.conftest import KERNEL_PACKAGE

    build = tmp_path / "build"
    (build / "include" / "config").mkdir(parents=True)
    (build / "include" / "config" / "kernel.release").write_text(kernel_abi(KERNEL_PACKAGE) + "\n")
    (build / ".config").write_text("")
    (build / "Module.symvers").write_text("")
    (build / "vmlinux").symlink_to(debian.vmlinux)
    return build


@pytest.mark.kernel
def test_systemtap_function_agrees_with_stap(stap_build, debian_kernel):
    """SystemTap itself (pass 2 against a build tree holding only the -dbg vmlinux) probes
    kernel.function("F") at exactly the addresses probelint checks: F's entry and its inlined
    copies (43 of 43 sampled functions agreed when this was written)."""
    if shutil.which("stap") is None:
        pytest.skip("SystemTap (Debian's systemtap) is not installed")
    import random

    build = stap_build
    image = debian_kernel.vmlinux
    stext, etext = image.marker("_stext"), image.marker("_etext")
    funcs = [s for s in image.symbols.symbols_in(stext, etext)
             if s.type in "tT" and "." not in s.name and image.symbols.count(s.name) == 1]
    # with inlined copies; mark_reg_not_init also with one inlined into itself, which perf drops
    known = [image.symbols.lookup_name(name) for name in ("rw_verify_area", "task_curr", "mark_reg_not_init")]
    sample = [*random.Random(5).sample(funcs, 6), *known]
    for sym in sample:
        probe = f'probe kernel.function("{sym.name}") {{ next }}'
        proc = subprocess.run(["stap", "-vvv", "-p2", "-r", str(build), "-e", probe], capture_output=True, text=True,
                              timeout=300, check=False)
        stap = _stap_pcs(proc.stderr)
        # the blocklists probelint applies are the ones this stap prints
        printed = dict(line.split(": ", 1) for line in proc.stderr.splitlines()
                       if line.startswith(("blfn: ", "blfn_ret: ")))
        assert printed == {"blfn": f"^{BLOCKLIST.pattern}$", "blfn_ret": f"^({BLOCKLIST_RETURN.pattern})$"}
        checked = {image.symbols.lookup_name(p.symbol).address + p.offset
                   for p in resolve_source_lines(debian_kernel, extract("t.stp", probe))}
        assert sym.address in checked and checked == stap, (sym.name, sorted(map(hex, stap)), sorted(map(hex, checked)))


@pytest.mark.kernel
def test_systemtap_call_and_braces_agree_with_stap(stap_build, debian_kernel):
    """`.call` is the out-of-line entry alone; braces inside a name are literal to stap 4.8 (no
    match), while braces around probe point components are its alternation."""
    if shutil.which("stap") is None:
        pytest.skip("SystemTap (Debian's systemtap) is not installed")
    build = stap_build

    def stap(probe: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["stap", "-vvv", "-p2", "-r", str(build), "-e", f"probe {probe} {{ next }}"],
                              capture_output=True, text=True, timeout=300, check=False)

    image = debian_kernel.vmlinux
    for name in ("rw_verify_area", "vfs_write"):  # rw_verify_area has inlined copies .call leaves out
        point = f'kernel.function("{name}").call'
        found = extract("t.stp", f"probe {point} {{ }}")
        checked = [image.symbols.lookup_name(p.symbol).address + p.offset for p in found]
        assert _stap_pcs(stap(point).stderr) == set(checked) == {image.symbols.lookup_name(name).address}
    braces = 'kernel.function("vfs_{read,write}")'
    refused = stap(braces)
    assert refused.returncode != 0 and "semantic error: no match" in refused.stderr
    (problem,) = extract("t.stp", f"probe {braces} {{ }}")
    assert isinstance(problem, ParseProblem) and not problem.unsupported


@pytest.mark.kernel
def test_systemtap_component_alternation_agrees_with_stap(stap_build, debian_kernel):
    """`kernel.{function("A"),{function("B"),function("C")}.return}` probes what stap -p2 lists for it."""
    if shutil.which("stap") is None:
        pytest.skip("SystemTap (Debian's systemtap) is not installed")
    point = 'kernel.{function("vfs_write"),{function("ksys_read"),function("ksys_write")}.return}'
    proc = subprocess.run(["stap", "-vvv", "-p2", "-r", str(stap_build), "-e", f"probe {point} {{ next }}"],
                          capture_output=True, text=True, timeout=300, check=False)
    listed = [line.split(" /* ")[0] for line in proc.stdout.splitlines() if line.startswith("kernel.function(")]
    stap = {(re.match(r'kernel\.function\("(\w+)@', line).group(1), line.endswith(".return")) for line in listed}
    found = resolve_source_lines(debian_kernel, extract("t.stp", f"probe {point} {{ }}"))
    image = debian_kernel.vmlinux
    checked = {(p.symbol, p.is_return) for p in found if p.offset == 0}
    assert stap == checked == {("vfs_write", False), ("ksys_read", True), ("ksys_write", True)}
    entries = {image.symbols.lookup_name(p.symbol).address + p.offset for p in found if not p.is_return}
    returns = {image.symbols.lookup_name(name).address for name in ("ksys_read", "ksys_write")}
    assert entries == _stap_pcs(proc.stderr) - returns


@pytest.mark.kernel
def test_systemtap_inline_agrees_with_stap(stap_build, debian_kernel):
    """`.inline` is the inlined copies alone (stap -p2's addresses); none: stap's "no match"."""
    if shutil.which("stap") is None:
        pytest.skip("SystemTap (Debian's systemtap) is not installed")
    image = debian_kernel.vmlinux
    point = 'kernel.function("rw_verify_area").inline'
    proc = subprocess.run(["stap", "-vvv", "-p2", "-r", str(stap_build), "-e", f"probe {point} {{ next }}"],
                          capture_output=True, text=True, timeout=300, check=False)
    found = resolve_source_lines(debian_kernel, extract("t.stp", f"probe {point} {{ }}"))
    checked = {image.symbols.lookup_name(p.symbol).address + p.offset for p in found}
    assert checked and checked == _stap_pcs(proc.stderr)
    assert image.symbols.lookup_name("rw_verify_area").address not in checked
    (none,) = resolve_source_lines(debian_kernel, extract("t.stp", 'probe kernel.function("vfs_read").inline { }'))
    assert isinstance(none, ParseProblem) and not none.unsupported and "no match" in none.message
