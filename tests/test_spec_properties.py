"""Property-based tests: no probe line, however odd, makes the parser raise, and what it accepts
round-trips through the kernel syntax probelint prints."""

from hypothesis import given, settings
from hypothesis import strategies as st

from probelint.readers.spec import ParseProblem, ProbeSpec, parse_line

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,30}", fullmatch=True)


@settings(max_examples=500)
@given(st.text(max_size=200))
def test_any_line_parses_or_is_a_problem(line):
    result = parse_line(line, "f", 1)
    assert result is None or isinstance(result, (ProbeSpec, ParseProblem))
    if result is not None:
        assert 1 <= result.location.column <= max(1, len(line))


@settings(max_examples=300)
@given(names, st.integers(0, 0xFFFF_FFFF), st.sampled_from(["", "xfs:"]), st.booleans())
def test_canonical_form_round_trips(symbol, offset, module, is_return):
    text = f"{module}{symbol}+{offset:#x}" + ("%return" if is_return and offset == 0 else "")
    spec = parse_line(text, "f", 1)
    assert isinstance(spec, ProbeSpec)
    again = parse_line(spec.canonical, "f", 1)
    assert isinstance(again, ProbeSpec)
    assert (again.symbol, again.module, again.offset, again.is_return) == (spec.symbol, spec.module, spec.offset,
                                                                            spec.is_return)
