"""SystemTap tapset aliases (`probe syscall.read`, `vfs.*`) read through the tapsets, as stap 4.8 does."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import probelint
from probelint.readers import extract, tapsets
from probelint.readers.spec import ParseProblem, ProbeSpec, SourceLineProbe
from tests.test_source_lines import stap_build  # noqa: F401  (the build tree stap -p2 reads)

# written here in the tapsets' style: a macro chosen by arch, an alias of aliases with `!`, an
# optional point, a fallback tracepoint, a return alias, a point under a kernel-version condition
MACROS = '''
%( arch == "s390" %?
@define sys_prefix %( "" %)
%)
%( arch == "x86_64" %?
@define sys_prefix %( "__{ia32,x64}_" %)
%)
'''
TAPSET = '''
# read ___
probe mysys.read = dw_mysys.read !, nd_mysys.read { }
probe mysys.read.return = kernel.function("ksys_read").return { }
probe dw_mysys.read =
%( arch == "s390" %?
	kernel.function("sys32_read").call ?
%:
	kernel.function("sys_read").call
%)
{ fd = $fd }
probe nd_mysys.read = nd1_mysys.read !, kernel.trace("sys_enter") { }
probe nd1_mysys.read = kprobe.function(@sys_prefix "sys_read") { }, { /* a second body */ }
probe mysys.write = kernel.function("vfs_write") ?, kprobe.function("ksys_write") { }
%( kernel_v >= "5.0" %?
probe mysys.open = kernel.function("do_sys_open") { }
%)
probe mysys.wait = dw_mysys.wait !, kernel.function("vfs_read") { }
probe dw_mysys.wait = kernel.function("sys_wait4").call, kernel.function("compat_sys_wait4").call ? { }
function helper() %{ /* embedded C: { "probe fake = x" */ %}
'''


@pytest.fixture
def tapset_dir(tmp_path, monkeypatch):
    root = tmp_path / "tapset"
    (root / "linux").mkdir(parents=True)
    (root / "linux" / "mysys.stp").write_text(TAPSET)
    (root / "linux" / "mysys.stpm").write_text(MACROS)
    monkeypatch.setenv("SYSTEMTAP_TAPSET", str(root))
    return root


def points(script: str) -> list[object]:
    return extract("t.stp", script)


def test_alias_points_are_read_through_the_tapsets(tapset_dir):
    read = points('probe begin { }\nprobe  mysys.read, mysys.read.return ? { }\n')
    texts = [(p.text, p.location.line, p.location.column, p.origin.optional is not None, p.origin.sufficient)
             for p in read]
    assert texts == [
        ('mysys.read -> kernel.function("sys_read").call', 2, 8, True, True),
        ('mysys.read -> kprobe.function("__ia32_sys_read")', 2, 8, True, True),
        ('mysys.read -> kprobe.function("__x64_sys_read")', 2, 8, True, True),
        ('mysys.read.return -> kernel.function("ksys_read").return', 2, 20, True, False)]
    # the `!` chain is one statement of alternatives, each point its own branch; the braces' two one
    entry, ia32, x64, _ = read
    assert entry.origin.alternatives == ia32.origin.alternatives is not None
    assert entry.origin.branch != ia32.origin.branch == x64.origin.branch
    assert all(p.origin.path == "register_kprobe" for p in read)
    assert isinstance(read[1], ProbeSpec) and read[1].symbol == "__ia32_sys_read"


def test_wildcards_optional_points_and_what_is_not_checked(tapset_dir):
    read = points('probe mysys.wr* { }\nprobe mysys.open { }\nprobe nosuch.thing { }\n')
    vfs, ksys, opened, unknown = read
    assert isinstance(vfs, SourceLineProbe) and vfs.origin.optional and not ksys.origin.optional
    assert isinstance(opened, ParseProblem) and opened.unsupported and 'kernel_v >= "5.0"' in opened.message
    assert isinstance(unknown, ParseProblem) and unknown.unsupported and "do not define" in unknown.message
    star = points("probe mysys.* { }\n")
    assert {p.text.split(" -> ")[0] for p in star} == {"mysys.*"}
    # each alias it names is its own `!` list (mysys.read's does not decide mysys.write's)
    assert len({p.origin.alternatives for p in star if p.origin.sufficient}) == 2  # read, wait
    assert star[-1].origin.alternatives is None and "ksys_write" in star[-1].text


def test_a_failing_bang_alternative_is_dropped_whole(tapset_dir):
    """stap drops a `!` point that does not resolve, required points inside it included."""
    wait4, compat, vfs = points("probe mysys.wait { }\n")
    assert wait4.origin.optional and not wait4.origin.sufficient and compat.origin.sufficient
    assert not vfs.origin.optional


def test_no_tapsets_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("SYSTEMTAP_TAPSET", str(tmp_path / "none"))
    (problem,) = points("probe vfs.read { }\n")
    assert isinstance(problem, ParseProblem) and problem.unsupported and "no tapsets installed" in problem.message


def test_script_aliases_and_builtins_are_no_tapset_uses(tapset_dir):
    read = points('probe mine = kernel.function("vfs_read") { }\nprobe mine, begin, end, timer.profile { }\n')
    assert [p.text for p in read] == ["vfs_read"]


def test_kprobe_function_braces_are_alternatives():
    read = points('probe kprobe.function("vfs_{read,write}") { }\n')
    assert [p.symbol for p in read] == ["vfs_read", "vfs_write"]


@pytest.mark.kernel
def test_tapset_aliases_agree_with_stap(stap_build, debian):  # noqa: F811  (the imported fixture)
    """The kprobes stap -p2 places for tapset aliases (the installed tapsets, the -dbg vmlinux) are
    the points probelint finds placed and used."""
    if shutil.which("stap") is None or not tapsets.tapset_root().is_dir():
        pytest.skip("SystemTap (Debian's systemtap) is not installed")
    (stap_build / "System.map").symlink_to(debian.system_map)  # kprobe.function needs the symbols
    uses = ["syscall.read", "syscall.read.return", "vfs.read", "nfs.fop.read", "syscall.open*", "vfs.write.return"]
    proc = subprocess.run(["stap", "-p2", "-r", str(stap_build), "-e", f"probe {', '.join(uses)} {{ next }}"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # a `.return` whose body uses @entry() is listed with a `.call` twin at its own pc: the
    # kretprobe's entry handler, no kprobe of its own
    stap = {(m.group(2), m.group(3) == ".return") for m in re.finditer(
        r'^(kernel|kprobe)\.function\("(\w+)(?:@[^"]*)?"\)(\.call|\.return)?.*$', proc.stdout, re.M)
        if not (m.group(3) == ".call" and m.group().endswith(".return */"))}
    script = stap_build / "t.stp"
    script.write_text(f"probe {', '.join(uses)} {{ next }}\n")
    report = probelint.check([debian.vmlinux], files=[script])
    placed = {(r.spec.symbol, r.spec.is_return) for r in report
              if r.verdict.registers is True and isinstance(r.spec, ProbeSpec) and r.spec.offset == 0
              and not any(f.rule == "KP411" for f in r.findings)}
    assert stap == placed, (sorted(stap - placed), sorted(placed - stap))
