import probelint
from probelint.findings import Severity
from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC vfs_read
    FENTRY
    push %rbp
    pop %rbp
    ret
    .p2align 4
FUNC vfs_write
    FENTRY
    ret
    .p2align 4
FUNC vfs_notrace
    ret
"""


def test_wildcard_expansion_is_reported_on_its_first_match(build_kernel, tmp_path):
    script = tmp_path / "t.bt"
    script.write_text("kprobe:vfs_* { @[probe] = count(); }\n")
    report = probelint.check([build_kernel(SOURCE)], files=[script], hints="never")
    assert [r.spec.symbol for r in report] == ["vfs_read", "vfs_write"]  # vfs_notrace has no ftrace site
    assert rules_fired(report[0]) == ["KP201", "KP406"] and rules_fired(report[1]) == ["KP201"]
    finding = report[0].findings[-1]
    assert finding.message == "vfs_* matches 2 traceable functions; all register"
    assert (finding.location.line, finding.location.column) == (1, 8)  # the wildcard as written


def test_wildcard_finding_follows_select_and_severity(build_kernel, tmp_path):
    script = tmp_path / "t.bt"
    script.write_text("kprobe:vfs_* { }\n")
    image = build_kernel(SOURCE)
    assert "KP406" not in rules_fired(probelint.check([image], files=[script], ignore=["KP406"])[0])
    (finding,) = probelint.check([image], files=[script], select=["KP406"], severity={"KP406": "warning"})[0].findings
    assert finding.severity is Severity.WARNING
