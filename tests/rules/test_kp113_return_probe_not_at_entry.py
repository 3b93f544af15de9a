from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC f
    FENTRY
    push %rbp
    pop %rbp
    ret
"""


def test_return_probe_inside_function(lint):
    results = lint(SOURCE, "r:ev f+5", "f+5%return", "kretprobe:f+6")
    for r in results:
        assert rules_fired(r) == ["KP113"] and r.verdict.errno == "EINVAL"


def test_return_probe_on_entry(lint):
    results = lint(SOURCE, "r:ev f", "f%return", "kretprobe:f")
    for r in results:
        assert "KP113" not in rules_fired(r) and r.verdict.registers and r.verdict.ftrace
