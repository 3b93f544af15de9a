import probelint
from tests.conftest import rules_fired

SOURCE = """
    .text
FUNC f
    FENTRY
    ret
"""


def test_forms_not_modelled_are_not_checked(build_kernel, tmp_path):
    script = tmp_path / "t.stp"
    script.write_text('probe module("ext4").statement("ext4_file_open@fs/ext4/file.c:1") { }\n'
                      'probe kprobe.function("f") { }\n')
    report = probelint.check([build_kernel(SOURCE)], files=[script], hints="never")
    unchecked, checked = report
    assert rules_fired(unchecked) == ["KP407"] and unchecked.verdict.registers is None
    assert checked.verdict.registers is True
    counts = report.counts()
    assert (counts.registers, counts.refused, counts.unchecked) == (1, 0, 1)
