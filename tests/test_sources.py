"""Probes read where users keep them: bpftrace, libbpf, shell scripts, whole trees."""

import json
import subprocess
import sys

import pytest

import probelint
import probelint.engine
from probelint.errors import InputError
from probelint.readers import SourceLineProbe, detect_kind, extract
from probelint.readers.spec import ParseProblem, ProbeSpec
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
    assert files == {"trace.bt", "prog.bpf.c", "setup.sh", "portable.stp", "portable.bt", "snoop.py", "policy.yaml",
                     "modules.stp", "demostat.py", "demostat.c", "lookups.bt"}
    kp406 = [f["message"] for p in data["probes"] for f in p["findings"] if f["rule"] == "KP406"]
    assert any("demo_* matches 3 traceable functions; 1 would fail: demo_nmi_handler" in m for m in kp406)


def test_perf_source_line_probe_without_dwarf_is_reported_not_checked():
    kernel = probelint.load_kernel([DEMO / "demo.elf"])
    results = probelint.engine.check_probes(kernel, resolve_source_lines(kernel, probes("setup.sh")))
    unchecked = results[4]
    assert [f.rule for f in unchecked.findings] == ["KP407"] and unchecked.verdict.registers is None
    assert "no DWARF" in unchecked.findings[0].message and where(unchecked.spec) == (5, 13)


def test_bpftrace_patterns_may_start_with_a_wildcard(tmp_path):
    """bpftrace takes an attach point's text up to '{', ',' or a space (src/parser.cpp
    parse_attach_point): ``kprobe:*``, ``k:*_read`` and ``kprobe:[dv]*`` are patterns too."""
    script = "kprobe:*, k:*_read { @[func] = count(); }\nkretprobe:?emo_write, kprobe:[dv]* {}\n"
    found = extract("t.bt", script)
    assert [(p.text, p.is_return, where(p)) for p in found] == [
        ("*", False, (1, 8)), ("*_read", False, (1, 13)), ("?emo_write", True, (2, 11)), ("[dv]*", False, (2, 30))]
    assert all(p.is_glob for p in found)
    one_liner = extract("run.sh", "bpftrace -e 'kprobe:* { exit(); }'\n")
    assert [(p.text, where(p)) for p in one_liner] == [("*", (1, 21))]


def test_bpftrace_wildcard_at_the_start_expands():
    kernel = probelint.load_kernel([DEMO / "demo.elf"])
    expanded = expand_globs(kernel, extract("t.bt", "kprobe:*_read {}\n"))
    assert [(p.symbol, p.expanded_from.text) for p in expanded] == [("demo_read", "*_read")]


def test_kprobe_events_echo_without_a_target_is_a_finding():
    (problem,) = extract("run.sh", "echo 'p:do_sys_open' >> /sys/kernel/tracing/kprobe_events\n")
    assert isinstance(problem, ParseProblem) and where(problem) == (1, 7)
    assert "event name" in problem.message and "EINVAL" in problem.message


def test_perf_tools_shorthand_in_a_probe_list():
    (spec,) = extract("probes.txt", "r:demo_read $retval\n")
    assert (spec.symbol, spec.module, spec.is_return, where(spec)) == ("demo_read", None, True, (1, 3))


@pytest.mark.parametrize(
    ("name", "text", "looks_like"),
    [("tools/opensnoop.py", "#!/usr/bin/python\nfrom bcc import BPF\n", "a Python program"),
     ("opensnoop", "#!/usr/bin/env python3\nfrom bcc import BPF\n", "a Python program"),
     ("tool", "#!/usr/bin/perl -w\nuse strict;\n", "a Perl program"),
     ("policy.yaml", "kprobes:\n  - vfs_read\n", "a YAML file"),
     ("probe.c", "int x;\n", "C source that is not libbpf BPF C (.bpf.c)"),
     ("README.md", "# probes\nvfs_read\n", "a Markdown document")],
)
def test_a_file_of_another_kind_is_refused(name, text, looks_like):
    with pytest.raises(InputError) as caught:
        extract(name, text)
    assert str(caught.value) == (f"{name}: {looks_like}, not a probe file probelint reads "
                                 "(--source-type list reads it as a probe list)")
    assert extract(name, text, "list")  # read as asked


def test_a_python_tool_on_the_command_line_is_one_error_line(tmp_path):
    tool = tmp_path / "opensnoop.py"
    tool.write_text("#!/usr/bin/python\nfrom bcc import BPF\n" + "print('x')\n" * 50)
    (tmp_path / "trace.bt").write_text("kprobe:demo_read {}\n")
    proc = subprocess.run([sys.executable, "-m", "probelint", str(DEMO / "demo.elf"), str(tool)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"probelint: error: {tool}: a Python program, not a probe file probelint reads "
                           "(--source-type list reads it as a probe list)\n")
    walked = subprocess.run([sys.executable, "-m", "probelint", "--format", "json", str(DEMO / "demo.elf"),
                             str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert [p["file"] for p in json.loads(walked.stdout)["probes"]] == [str(tmp_path / "trace.bt")]


def test_each_tool_states_its_registration_path():
    paths = {(p.location.file.rsplit("/", 1)[-1], p.origin.tool, p.origin.path)
             for name in ("trace.bt", "prog.bpf.c", "setup.sh", "portable.stp") for p in probes(name)}
    assert paths == {("trace.bt", "bpftrace", "kprobe_events"), ("prog.bpf.c", "libbpf", "kprobe_events"),
                     ("setup.sh", "kprobe_events", "kprobe_events"), ("setup.sh", "perf", "kprobe_events"),
                     ("setup.sh", "bpftrace", "kprobe_events"), ("portable.stp", "SystemTap", "register_kprobe")}


def test_systemtap_optional_and_alternative_points():
    found = probes("portable.stp")
    assert [(p.text, where(p), p.origin.sufficient, p.origin.optional is not None) for p in found] == [
        ("demo_read_iter", (6, 24), True, True), ("demo_read", (7, 24), False, False),
        ("demo_fsync", (12, 24), False, True), ("demo_notrace", (14, 24), False, False)]
    assert found[0].origin.alternatives == found[1].origin.alternatives is not None
    assert found[2].origin.alternatives is None and found[2].is_return  # "{%d}" in a string opens no block


def test_bpftrace_config_block_makes_missing_probes_optional():
    found = probes("portable.bt")
    assert [p.text for p in found] == ["demo_read", "demo_read_iter", "demo_notrace"]
    assert all(p.origin.optional == "config missing_probes = ignore" for p in found)
    assert all(p.origin.optional is None for p in probes("trace.bt"))


def test_a_tree_whose_tools_skip_what_is_missing_has_no_error():
    """Every probe the tools skip on purpose is information; the path is stated per probe."""
    args = [sys.executable, "-m", "probelint", str(DEMO / "demo.elf"), str(DATA / "portable.stp"),
            str(DATA / "portable.bt")]
    proc = subprocess.run([*args, "--format", "json"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout
    data = {(p["file"].rsplit(".", 1)[-1], p["spec"]): p for p in json.loads(proc.stdout)["probes"]}
    assert {p["path"] for (kind, _), p in data.items() if kind == "stp"} == {"register_kprobe"}
    assert {p["path"] for (kind, _), p in data.items() if kind == "bt"} == {"kprobe_events"}
    assert data["stp", "demo_notrace"]["verdict"]["registers"]  # no notrace test on register_kprobe()
    assert data["bt", "demo_notrace"]["verdict"]["errno"] == "EINVAL"
    assert data["stp", "demo_read"]["verdict"]["registers"] is True
    assert [f["rule"] for f in data["bt", "demo_notrace"]["findings"]] == ["KP411"]
    assert all(f["severity"] == "info" for p in data.values() for f in p["findings"])
    text = subprocess.run(args, capture_output=True, text=True, cwd=ROOT).stdout
    assert text.splitlines()[-1].endswith("via kprobe_events 3, register_kprobe 4]")
    assert "info not shown: " in text and "[KP411]" not in text
    shown = subprocess.run([*args, "--show-info"], capture_output=True, text=True, cwd=ROOT).stdout
    assert "SystemTap skips this probe where it cannot be placed (an optional point: ?)" in shown


def test_bcc_tool_read_as_text():
    """attach_* calls, event_re, kprobe__ functions in the C text, syscall names as bcc spells
    them; a run-time event is not checked, at its expression."""
    found = probes("snoop.py")
    assert [(type(p).__name__, p.text, where(p), getattr(p, "is_return", None)) for p in found] == [
        ("ProbeSpec", "demo_write", (8, 13), False),
        ("ProbeSpec", "sys_read -> __x64_sys_read", (9, 16), True),
        ("ProbeSpec", "demo_read", (13, 12), True),  # READ_FN's only literal
        ("ParseProblem", "fn", (17, 27), None),  # a parameter: known only at run time
        ("ProbeSpec", "demo_notrace", (21, 24), False),
        ("ProbeSpec", "openat -> __x64_sys_openat", (23, 45), False),
        ("ProbeSpec", "^demo_.*e$", (24, 28), False),
        ("ProbeSpec", "demo_read, event_off=7 -> demo_read+0x7", (25, 24), False)]
    assert found[3].unsupported and found[6].regex and found[7].offset == 7
    assert {p.origin.tool for p in found} == {"bcc"} and found[6].origin.optional
    assert detect_kind("tools/opensnoop", "#!/usr/bin/python3\nb.attach_kprobe(event='x')\n") == "bcc"
    assert detect_kind("setup.py", "import setuptools\n") == "list"  # refused by extract, as before


def test_bcc_event_re_matches_whole_names():
    kernel = probelint.load_kernel([DEMO / "demo.elf"])
    regex = [p for p in probes("snoop.py") if getattr(p, "regex", False)]
    assert [p.symbol for p in expand_globs(kernel, regex)] == ["demo_write"]  # demo_notrace: no ftrace site
    none = expand_globs(kernel, [regex[0]._replace(symbol="demo_")])  # a prefix is no match: re.fullmatch
    assert [p.message for p in none] == ['event_re demo_ matches no traceable function: bcc raises ("Failed to '
                                         'attach BPF program")']
    assert none[0].origin.optional is None  # each match is optional, but bcc fails where there is none


def test_tetragon_policy_located_at_its_nodes():
    found = probes("policy.yaml")
    assert [(p.text, where(p), getattr(p, "is_return", None), p.origin.tool) for p in found] == [
        ("demo_read", (8, 12), False, "Tetragon"), ("sys_write -> __x64_sys_write", (13, 11), False, "Tetragon"),
        ("demo_notrace", (15, 11), True, "Tetragon"), ("list:demo-calls", (21, 12), None, "Tetragon")]
    assert found[1].symbol == "__x64_sys_write" and found[3].unsupported
    assert detect_kind("ci.yaml", "name: ci\non: push\n") == "list"  # refused by extract, as before


def test_a_tree_walk_takes_scripts_by_their_content(tmp_path):
    """Extensionless scripts by their #! line, bcc tools and Tetragon policies by what they hold;
    other programs, YAML and unreadable files are left out."""
    from probelint.readers import tree_files

    (tmp_path / "kprobe").write_text("#!/bin/bash\necho 'p:demo demo_read' >> kprobe_events\n")
    (tmp_path / "demosnoop").write_text((DATA / "snoop.py").read_text())
    (tmp_path / "policy.yaml").write_text((DATA / "policy.yaml").read_text())
    (tmp_path / "Makefile").write_text("all:\n\ttrue\n")
    (tmp_path / "tool").write_text("#!/usr/bin/python3\nprint('no probes')\n")
    (tmp_path / "setup.py").write_text("import setuptools\n")
    (tmp_path / "ci.yml").write_text("on: push\n")
    (tmp_path / "blob").write_bytes(b"#!\xff\xfe")
    (tmp_path / "other").symlink_to(tmp_path / "kprobe")  # a link is followed only by a probe name
    assert [p.name for p in tree_files(tmp_path)] == ["demosnoop", "kprobe", "policy.yaml"]


def test_systemtap_module_functions_call_and_literal_braces():
    found = probes("modules.stp")
    assert [(type(p).__name__, p.text, where(p)) for p in found] == [
        ("ProbeSpec", "xfs_file_read_iter -> xfs:xfs_file_read_iter", (3, 31)),
        ("ProbeSpec", "xfs_file_write_iter -> xfs:xfs_file_write_iter", (4, 38)),
        ("ParseProblem", "ext4_file_read_iter@fs/ext4/file.c:10", (5, 33)),
        ("ProbeSpec", "demo_read", (6, 24)),
        ("ParseProblem", "demo_{read,write}", (7, 24))]
    assert (found[0].module, found[0].is_return, found[0].origin.optional is not None) == ("xfs", True, True)
    assert found[2].unsupported and not found[4].unsupported and "no match" in found[4].message


def test_bcc_guarded_attaches_are_alternatives():
    """A function the tool attaches only where bcc finds it (get_kprobe_functions, ksymname, a
    try/except) is information, the branch it does not take is not used; an unguarded one fails."""
    found = probes("demostat.py")
    assert [(p.text, p.location.file.rsplit("/", 1)[-1], where(p), p.origin.arm, p.origin.sufficient)
            for p in found] == [
        ("__demo_read_start", "demostat.py", (8, 28), 0, True), ("demo_read", "demostat.py", (10, 28), 1, False),
        ("demo_write", "demostat.py", (12, 31), 0, True), ("demo_write", "demostat.py", (13, 28), 0, True),
        ("demo_old_write", "demostat.py", (15, 28), 1, True), ("demo_flush", "demostat.py", (17, 31), 0, True),
        ("__demo_vfs_read", "demostat.py", (19, 28), 0, True), ("demo_read", "demostat.py", (22, 31), 1, False),
        ("demo_gone", "demostat.py", (23, 24), None, False),
        ("demo_write", "demostat.c", (4, 13), None, False)]  # src_file: the C file beside the script
    proc = subprocess.run([sys.executable, "-m", "probelint", str(DEMO / "demo.elf"), str(DATA / "demostat.py"),
                           "--format", "json"], capture_output=True, text=True, cwd=ROOT)
    rules = [(p["line"], [(f["rule"], f["severity"]) for f in p["findings"] if f["rule"] not in ("KP201", "KP409")])
             for p in json.loads(proc.stdout)["probes"] if p["file"].endswith(".py")]
    assert rules == [(8, [("KP411", "info")]), (10, []), (12, []), (13, []), (15, [("KP411", "info")]),
                     (17, [("KP411", "info")]), (19, [("KP411", "info")]), (22, []), (23, [("KP101", "error")])]
    text = subprocess.run([sys.executable, "-m", "probelint", str(DEMO / "demo.elf"), str(DATA / "demostat.py"),
                           "--show-info"], capture_output=True, text=True, cwd=ROOT).stdout
    assert "not used: bcc takes the branch at" in text and '`BPF.get_kprobe_functions(b"demo_flush")` holds' in text


BCC_SKIPS = """
    .text
FUNC io_start
    FENTRY
    ret
FUNC io_guarded
    FENTRY
    ret
NOKPROBE io_guarded
FUNC perf_io_event
    FENTRY
    ret
FUNC __perf_io
    FENTRY
    ret
    .p2align 4
    .type io_start.cold, @function
io_start.cold:
    FENTRY
    ret
"""


def test_bcc_event_re_skips_what_get_kprobe_functions_skips(build_kernel):
    """bcc leaves blacklisted functions, perf's own and .cold pieces out of an event_re's
    matches; a bpftrace wildcard keeps them (the kernel refuses the blacklisted one)."""
    kernel = probelint.load_kernel([build_kernel(BCC_SKIPS)])
    regex = next(p for p in probes("snoop.py") if getattr(p, "regex", False))
    assert [p.symbol for p in expand_globs(kernel, [regex._replace(symbol=".*io.*")])] == ["io_start"]
    glob = regex._replace(symbol="*io*", regex=False)
    assert [p.symbol for p in expand_globs(kernel, [glob])] == [
        "__perf_io", "io_guarded", "io_start", "io_start.cold", "perf_io_event"]


def test_bpftrace_wildcard_that_matches_nothing():
    """bpftrace drops a wildcard that matches nothing from a probe that keeps other attach points
    (information); the only attach point of a probe fails the program (bpftrace >= 0.24)."""
    found = probes("lookups.bt")
    assert [(p.text, where(p), p.origin.siblings) for p in found] == [
        ("demo_read", (9, 8), 1), ("demo_read.constprop.*", (10, 8), 1), ("demo_gone_*", (16, 8), 0)]
    proc = subprocess.run([sys.executable, "-m", "probelint", str(DEMO / "demo.elf"), str(DATA / "lookups.bt"),
                           "--format", "json"], capture_output=True, text=True, cwd=ROOT)
    rules = [[(f["rule"], f["severity"]) for f in p["findings"] if f["rule"] != "KP201"]
             for p in json.loads(proc.stdout)["probes"]]
    assert rules == [[], [("KP411", "info")], [("KP001", "error")]]
    text = subprocess.run([sys.executable, "-m", "probelint", str(DEMO / "demo.elf"), str(DATA / "lookups.bt"),
                           "--show-info"], capture_output=True, text=True, cwd=ROOT).stdout
    assert "bpftrace drops a wildcard that matches nothing; its probe keeps its 1 other attach point" in text
    assert '"Probe has no valid attach points"' in text and '"No probes to attach"' in text


SHELL_VARIABLES = """\
#!/bin/bash
P="p:grp/ev demo_read+0x7"
FN=demo_write
echo "$P" >> /sys/kernel/tracing/kprobe_events
perf probe -a "$FN+4" -a ${FN}%return
EV='p:grp/two demo_read'
echo $EV >> kprobe_events
echo "p:grp/three $FN" >> kprobe_events
perf probe -a "$1+4"
twice=demo_read
twice=demo_write
perf probe "$twice"
trace() {
    local inner=demo_read
    perf probe "$inner"
}
perf probe "$inner"
for f in demo_read demo_write; do perf probe -a "$f"; done
echo "p:$(cat name) demo_read" >> kprobe_events
"""


def test_shell_definitions_in_variables():
    """A variable assigned one literal before its use is resolved (the probe located at the
    variable's `$`, never rewritten by --fix); any other is KP407 naming the variable and why."""
    found = extract("run.sh", SHELL_VARIABLES)
    resolved = [(p.symbol, p.offset, p.is_return, where(p)) for p in found if isinstance(p, ProbeSpec)]
    assert resolved == [("demo_read", 7, False, (4, 7)), ("demo_write", 4, False, (5, 16)),
                        ("demo_write", 0, True, (5, 26)), ("demo_read", 0, False, (7, 6)),
                        ("demo_write", 0, False, (8, 19)), ("demo_read", 0, False, (15, 17))]
    assert all(" -> " in p.text for p in found if isinstance(p, ProbeSpec))  # not the file's text: no fix
    problems = [(where(p), p.message) for p in found if isinstance(p, ParseProblem)]
    assert all(p.unsupported for p in found if isinstance(p, ParseProblem))
    assert [w for w, _ in problems] == [(9, 16), (12, 13), (17, 13), (18, 50), (19, 9)]
    assert "$1" in problems[0][1] and "positional" in problems[0][1]
    assert "$twice" in problems[1][1] and "lines 10, 11" in problems[1][1]
    assert "$inner" in problems[2][1] and "function trace" in problems[2][1] and "line 14" in problems[2][1]
    assert "$f" in problems[3][1] and "for loop" in problems[3][1]
    assert "command substitution" in problems[4][1]


def test_systemtap_component_alternation():
    """`kernel.{function("a"),{function("b"),function("c")}.return} ?` stands for each point it
    spells (nested too), each at its own string, the flag after the braces on every one; a brace
    inside a name is no alternation; the statement's body braces are not mistaken for one."""
    text = ('probe kernel.{function("demo_read"),{function("demo_write"),function("demo_x")}.return} ? {\n'
            '  if (1) { next }\n}\n'
            'probe {kernel,kprobe}.function("demo_read") { }\n'
            'probe {kernel.function("demo_a"),kernel.function("demo_b")}.return { }\n')
    found = extract("t.stp", text)
    assert [(type(p).__name__, p.text, where(p), getattr(p, "is_return", None), p.origin.optional is not None)
            for p in found] == [
        ("SourceLineProbe", "demo_read", (1, 25), None, True), ("ProbeSpec", "demo_write", (1, 48), True, True),
        ("ProbeSpec", "demo_x", (1, 71), True, True),
        ("SourceLineProbe", "demo_read", (4, 33), None, False), ("ProbeSpec", "demo_read", (4, 33), False, False),
        ("ProbeSpec", "demo_a", (5, 25), True, False), ("ProbeSpec", "demo_b", (5, 51), True, False)]


def test_shell_commands_in_comments_are_not_read():
    """A commented-out command (a whole line, or after a command, or in a here-document: a script
    or kprobe_events lines) defines no probe, and a commented assignment sets no variable; a `#`
    inside quotes or a word (`a#b`, `$#`, `${#v}`) is not a comment, nor are a here-document's
    quotes quoting; the probes keep their columns in the file."""
    text = ("#!/bin/sh\n"
            "# echo 'p:a demo_write+1' >> /sys/kernel/tracing/kprobe_events\n"
            "#FN=demo_write\n"
            "FN=demo_read\n"
            "echo \"p:b $FN+7 x=#1\" >> /sys/kernel/tracing/kprobe_events  # perf probe -a demo_write\n"
            "  #bpftrace -e 'kprobe:demo_write { }'\n"
            "echo ${#FN} a#b >/dev/null; perf probe -a 'demo_read+0x6' # perf probe -a demo_x\n"
            "cat <<'EOF' > notes\n"
            "# bpftrace -e 'kprobe:demo_nmi_handler { }'\n"
            "don't\n"
            "EOF\n"
            "bpftrace -e 'kprobe:demo_write { printf(\"#%d\\n\", 1); }'\n")
    found = extract("run.sh", text)
    assert [(p.symbol, p.offset, where(p)) for p in found] == [
        ("demo_read", 7, (5, 11)), ("demo_read", 6, (7, 44)), ("demo_write", 0, (12, 21))]
