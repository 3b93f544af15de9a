import subprocess
import sys

from tests.conftest import DEMO, ROOT


def explain(*args):
    return subprocess.run([sys.executable, "-m", "probelint", "explain", *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_explain_marks_probe_window_and_verdict():
    proc = explain(str(DEMO / "demo.elf"), "demo_read+0x6")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == "demo_read+0x6: jump-optimized"
    assert any(line.startswith("  >  demo_read+0x6") for line in lines)
    assert any(line.startswith("  |  demo_read+0x9") for line in lines)  # the movabs completes the window


def test_explain_refused_probe_exits_1():
    proc = explain(str(DEMO / "demo.elf"), "demo_read+0x7")
    assert proc.returncode == 1 and "refused: EILSEQ" in proc.stdout and "[KP104]" in proc.stdout


def test_explain_needs_an_image():
    proc = explain("demo_read")
    assert proc.returncode == 2 and "name the kernel image" in proc.stderr
