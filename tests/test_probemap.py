"""probelint map: every boundary of a function classified, and read back with --query."""

import subprocess
import sys

import probelint
from tests.conftest import DEMO, ROOT


def run(*args):
    return subprocess.run([sys.executable, "-m", "probelint", "map", *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_map_agrees_with_single_probe_checks(tmp_path):
    out = tmp_path / "demo.map.gz"
    proc = run(str(DEMO / "demo.elf"), "--function", "demo_read", "--function", "demo_write", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "instruction boundaries" in proc.stdout
    kernel = probelint.load_kernel([DEMO / "demo.elf"])
    for spec in ("demo_read+0x0", "demo_read+0x6", "demo_read+0x9", "demo_write+0x6"):
        (single,) = probelint.check(kernel, [spec])
        v = single.verdict
        expected = "ftrace-based" if v.ftrace else "jump-optimized" if v.optimized else "int3 probe"
        assert run("--query", spec, str(out)).stdout.startswith(f"{spec}: {expected}"), spec
    assert "not an instruction boundary" in run("--query", "demo_read+0x7", str(out)).stdout


def test_map_errors(tmp_path):
    assert run(str(DEMO / "demo.elf"), "--function", "nope", "-o", str(tmp_path / "m.gz")).returncode == 2
    assert run("--query", "demo_read", str(DEMO / "probes.txt")).returncode == 2


def test_an_ambiguous_function_name_is_said(tmp_path):
    """Two functions named `show`: the map takes the one kallsyms_lookup_name() finds, and says so."""
    proc = run(str(DEMO / "demo.elf"), "--function", "show", "-o", str(tmp_path / "m.gz"))
    assert proc.returncode == 0 and "2 symbols are named show; mapping the lowest-addressed one" in proc.stderr
