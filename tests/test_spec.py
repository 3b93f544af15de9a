import pytest

from probelint.readers.spec import ParseProblem, ProbeSpec, parse_line


def parse(text: str) -> ProbeSpec:
    spec = parse_line(text, "f", 1)
    assert isinstance(spec, ProbeSpec), spec
    return spec


@pytest.mark.parametrize(
    ("text", "symbol", "module", "offset", "is_return", "column"),
    [
        ("vfs_read", "vfs_read", None, 0, False, 1),
        ("vfs_read+0x1c", "vfs_read", None, 0x1c, False, 1),
        ("vfs_read+28", "vfs_read", None, 28, False, 1),
        ("  xfs:xfs_buf_read_map+4", "xfs_buf_read_map", "xfs", 4, False, 3),
        ("vfs_read%return", "vfs_read", None, 0, True, 1),
        ("p:grp/ev vfs_read+0x5 arg=%di:u64", "vfs_read", None, 5, False, 10),
        ("p vfs_read", "vfs_read", None, 0, False, 3),
        ("r:ev vfs_read", "vfs_read", None, 0, True, 6),
        ("r16:ev xfs:xfs_buf_read_map", "xfs_buf_read_map", "xfs", 0, True, 8),
        ("kprobe:vfs_read+0x5", "vfs_read", None, 5, False, 8),
        ("kprobe:xfs:xfs_buf_read_map", "xfs_buf_read_map", "xfs", 0, False, 8),
        ("kretprobe:vfs_read", "vfs_read", None, 0, True, 11),
        ("foo.cold+2 # comment", "foo.cold", None, 2, False, 1),
    ],
)
def test_accepted_spellings(text, symbol, module, offset, is_return, column):
    spec = parse(text)
    assert (spec.symbol, spec.module, spec.offset, spec.is_return) == (symbol, module, offset, is_return)
    assert spec.location.column == column


def test_addresses_follow_kstrtoul():
    assert parse("0xffffffff8134cc50").address == 0xFFFFFFFF8134CC50
    assert parse("0777").address == 0o777  # octal, as the kernel reads it
    assert parse("4096").address == 4096


def test_octal_offset_is_flagged():
    assert parse("f+010").octal_offset and parse("f+010").offset == 8
    assert not parse("f+0x10").octal_offset and not parse("f+0").octal_offset


@pytest.mark.parametrize("text", ["f+", "f+08", "f+0x", "f-1", "f%entry", "f+0x100000000", "p2:ev f",
                                  "r0:ev f", "r5000:ev f", "1f", "a b", ":f"])
def test_malformed(text):
    assert isinstance(parse_line(text, "f", 3), ParseProblem)


def test_comments_blank_and_delete_lines_are_skipped():
    for text in ("", "   ", "# just a comment", "-:grp/ev"):
        assert parse_line(text, "f", 1) is None


@pytest.mark.parametrize(
    ("text", "is_return", "column"),
    [("p:do_sys_open", False, 3), ("r:do_sys_open", True, 3), ("  r:do_sys_open $retval", True, 5),
     ("p:do_sys_open mode=%cx:u16", False, 3), ("p:do_sys_open +0(%si):string", False, 3)],
)
def test_perf_tools_event_without_a_name_probes_the_symbol(text, is_return, column):
    """perf-tools' kprobe script reads ``p:SYMBOL [FETCHARGS]`` as a probe on SYMBOL named after it."""
    spec = parse(text)
    assert (spec.symbol, spec.module, spec.is_return, spec.location.column) == ("do_sys_open", None, is_return, column)


def test_kprobe_events_line_without_a_target_is_refused():
    """Written to kprobe_events, ``p:do_sys_open`` names an event and no probe point: EINVAL."""
    problem = parse_line("p:do_sys_open", "f", 1, kprobe_events=True)
    assert isinstance(problem, ParseProblem) and not problem.unsupported
    assert "do_sys_open" in problem.message and "event name" in problem.message and "EINVAL" in problem.message
    assert parse("p:ev do_sys_open").symbol == parse_line("p:ev do_sys_open", "f", 1, kprobe_events=True).symbol
