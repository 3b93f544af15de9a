import probelint
from probelint import resolve
from probelint.checks import all_rules
from probelint.readers import extract
from probelint.readers.spec import ProbeSpec
from tests.conftest import rules_fired
from tests.rules.test_kp406_wildcard import SOURCE


def test_wildcard_past_the_cap_checks_the_first_matches_and_says_so(build_kernel, tmp_path, monkeypatch):
    monkeypatch.setattr(resolve, "MAX_WILDCARD", 1)
    script = tmp_path / "t.bt"
    script.write_text("kprobe:vfs_* { }\n")
    report = probelint.check([build_kernel(SOURCE)], files=[script], hints="never")
    assert [r.spec.symbol for r in report] == ["vfs_read"]  # the first by name
    assert rules_fired(report[0]) == ["KP201", "KP406", "KP410"]
    kp406, kp410 = report[0].findings[-2:]
    assert kp406.message == "vfs_* matches 2 traceable functions; all of the 1 checked register"
    assert kp410.message == "vfs_* matches 2 traceable functions: only the first 1 by name are checked, the other 1 " \
                            "are not"
    assert (kp410.location.line, kp410.location.column) == (1, 8)
    assert kp410.severity is all_rules()["KP410"].severity


def test_wildcards_past_the_run_cap_keep_one_match_each(build_kernel, monkeypatch):
    monkeypatch.setattr(probelint.readers, "MAX_PROBES", 3)
    kernel = probelint.load_kernel([build_kernel(SOURCE)])
    parsed = extract("t.bt", "kprobe:vfs_* { }\nkprobe:vfs_* { }\n")
    expanded = resolve.expand_globs(kernel, parsed)
    # 3 probes in the run: 2 wildcards, and one spare match for the first
    assert [p.symbol for p in expanded if isinstance(p, ProbeSpec)] == ["vfs_read", "vfs_write", "vfs_read"]


def test_wildcard_within_the_cap_is_not_reported(build_kernel, tmp_path):
    script = tmp_path / "t.bt"
    script.write_text("kprobe:vfs_* { }\n")
    report = probelint.check([build_kernel(SOURCE)], files=[script], hints="never")
    assert all("KP410" not in rules_fired(r) for r in report)
