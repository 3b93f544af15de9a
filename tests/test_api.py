"""`probelint.check()` is the command line without the printing: same pipeline, same results."""

import json
import subprocess
import sys

import pytest

import probelint
from probelint.report import json as json_report
from tests.conftest import DEMO, ROOT

DATA = ROOT / "tests" / "data" / "sources"


@pytest.mark.parametrize("args", [
    [str(DEMO / "probes.txt")],  # a probe list: hints, KP001, KP002, KP102...
    [str(DATA)],  # a tree: bpftrace wildcards (KP406), libbpf, shell, perf source lines (KP407)
    ["--select", "KP1,KP4", "--cpu-profile", "EPYC-Rome", str(DEMO / "probes.txt")],
])
def test_check_equals_the_command_lines_json(args, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "probelint", "--format", "json", str(DEMO / "demo.elf"), *args],
                          capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode in (0, 1), proc.stderr
    settings = {}
    if "--select" in args:
        settings = {"select": ["KP1", "KP4"], "cpu_profile": "EPYC-Rome"}
    report = probelint.check([DEMO / "demo.elf"], files=[args[-1]], **settings)
    assert json_report.to_dict(report) == json.loads(proc.stdout)
    assert report.failed == (proc.returncode == 1)


def test_check_takes_probe_strings_and_a_loaded_kernel():
    kernel = probelint.load_kernel([DEMO / "demo.elf"])
    report = probelint.check(kernel, ["demo_read+0x7", "demo_read+0x6"], hints="never")
    assert [r.verdict.errno for r in report] == ["EILSEQ", None]
    assert report.kernel is kernel and report.failed and len(report) == 2


def test_unknown_setting_is_refused():
    with pytest.raises(TypeError, match="no setting 'selekt'"):
        probelint.check([DEMO / "demo.elf"], ["demo_read"], selekt=["KP1"])
