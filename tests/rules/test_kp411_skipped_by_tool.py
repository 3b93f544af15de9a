"""KP411: probes their tool skips on purpose are reported at info level, not as errors."""

import probelint
from probelint.findings import Severity
from tests.conftest import rules_fired
from tests.rules.test_kp105_notrace_function import SOURCE  # traced, untraced (notrace)


def check(build_kernel, tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return list(probelint.check([build_kernel(SOURCE)], files=[path], hints="never"))


def test_systemtap_optional_point_is_info(build_kernel, tmp_path):
    optional, required = check(build_kernel, tmp_path, "t.stp",
                               'probe kprobe.function("gone") ? { }\nprobe kprobe.function("gone") { }\n')
    assert optional.fired == {"KP101", "KP411"} and rules_fired(optional) == ["KP411"]
    assert optional.findings[0].severity is Severity.INFO and "unknown symbol gone" in optional.findings[0].message
    assert optional.verdict.errno == "ENOENT"  # the kernel's answer is kept
    assert [f.rule for f in required.findings] == ["KP101"]


def test_systemtap_first_resolving_alternative_is_taken(build_kernel, tmp_path):
    gone, taken, unused = check(build_kernel, tmp_path, "t.stp",
                                'probe kprobe.function("gone") !, kprobe.function("traced") !,\n'
                                '      kprobe.function("untraced") { }\n')
    assert [f.rule for f in gone.findings] == ["KP411"]
    assert taken.verdict.registers and "KP411" not in taken.fired
    assert unused.verdict.registers is None and "not used" in unused.findings[0].message
    assert f"{taken.spec.location}" in unused.findings[0].message


def test_alternatives_without_a_resolving_point_take_the_last(build_kernel, tmp_path):
    gone, last = check(build_kernel, tmp_path, "t.stp",
                       'probe kprobe.function("gone") !, kprobe.function("traced") { }\n')
    assert [f.rule for f in gone.findings] == ["KP411"] and last.verdict.registers and "KP411" not in last.fired


def test_bpftrace_missing_probes_ignore(build_kernel, tmp_path):
    program = 'config = { missing_probes = ignore }\nkprobe:untraced, kprobe:gone_* { }\n'
    notrace, nomatch = check(build_kernel, tmp_path, "t.bt", program)
    assert [f.rule for f in notrace.findings] == ["KP411"] and "KP105" in notrace.findings[0].message
    assert notrace.verdict.errno == "EINVAL"
    assert [f.rule for f in nomatch.findings] == ["KP411"]


def test_bpftrace_default_fails_on_a_missing_probe(build_kernel, tmp_path):
    (notrace,) = check(build_kernel, tmp_path, "t.bt", 'config = { missing_probes = error }\nkprobe:untraced { }\n')
    assert [f.rule for f in notrace.findings] == ["KP105"]


def test_systemtap_required_point_refused_at_registration_is_a_warning(build_kernel, tmp_path):
    """stap resolves the point (pass 2) and registers it at run time; a refusal there is a
    warning ("registration error [man warning::pass5]") and the script runs on without the probe
    (runtime/linux/kprobes.c stapkp_register_probes, PR6749): not an error. An unknown name
    stays one: pass 2 fails ("semantic error: no match")."""
    from tests.rules.test_kp106_blacklisted import SOURCE as BLACKLISTED

    path = tmp_path / "t.stp"
    path.write_text('probe kprobe.function("noinstr_fn") { }\nprobe kprobe.function("gone") { }\n')
    refused, unknown = probelint.check([build_kernel(BLACKLISTED)], files=[path], hints="never")
    assert rules_fired(refused) == ["KP106"] and refused.verdict.errno == "EINVAL"  # the kernel's verdict kept
    (finding,) = refused.findings
    assert finding.severity is Severity.WARNING and "registration error" in finding.message
    assert "runs without this probe" in finding.message
    assert [(f.rule, f.severity) for f in unknown.findings] == [("KP101", Severity.ERROR)]


def test_unused_alternative_counts_as_not_used(build_kernel, tmp_path):
    """A point `A !, B` leaves out is never registered by stap: counted as not used, not as a
    probe probelint could not check."""
    path = tmp_path / "t.stp"
    path.write_text('probe kprobe.function("traced") !, kprobe.function("untraced") { }\n')
    report = probelint.check([build_kernel(SOURCE)], files=[path], hints="never")
    counts = report.counts()
    assert (counts.registers, counts.unused, counts.unchecked, counts.refused) == (1, 1, 0, 0)
    from probelint.report.text import render

    assert "1 not used by its tool" in render(report) and "not checked" not in render(report)
