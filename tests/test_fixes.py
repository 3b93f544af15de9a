"""--fix, --unsafe-fixes and --diff on a probe file."""

import subprocess
import sys

from tests.conftest import DEMO, ROOT

ORIGINAL = (
    "kprobe:demo_write+010   # octal\n"
    "0xffffffff81000019      # demo_read+0x9 by address\n"
    "demo_read+0x7           # mid-instruction\n"
    "demo_write+0x6\n"
    "demo_write+0x6          # duplicate\n"
)


def run(*args):
    return subprocess.run([sys.executable, "-m", "probelint", str(DEMO / "demo.elf"), *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_safe_fixes_keep_what_is_observed(tmp_path):
    probes = tmp_path / "p.txt"
    probes.write_text(ORIGINAL)
    run("--fix", str(probes))
    assert probes.read_text() == (
        "kprobe:demo_write+0x8   # octal\n"
        "demo_read+0x9      # demo_read+0x9 by address\n"
        "demo_read+0x7           # mid-instruction\n"
        "demo_write+0x6\n"
        "demo_write+0x6          # duplicate\n"  # removing it changes what runs: an unsafe fix
    )


def test_unsafe_fixes_move_probes(tmp_path):
    probes = tmp_path / "p.txt"
    probes.write_text(ORIGINAL)
    proc = run("--unsafe-fixes", str(probes))
    assert "applied" in proc.stderr
    fixed = probes.read_text()
    assert "demo_read+0x7 " not in fixed and "demo_write+010" not in fixed
    assert run(str(probes)).returncode == 0  # nothing the kernel would refuse is left


def test_diff_writes_nothing(tmp_path):
    probes = tmp_path / "p.txt"
    probes.write_text(ORIGINAL)
    proc = run("--diff", str(probes))
    assert probes.read_text() == ORIGINAL
    assert "-kprobe:demo_write+010" in proc.stdout and "+kprobe:demo_write+0x8" in proc.stdout


def test_fix_carrying_rules():
    import probelint

    kernel = probelint.load_kernel([DEMO / "demo.elf"])
    (address,) = probelint.check(kernel, ["0xffffffff81000019"])
    duplicate = probelint.check(kernel, ["demo_read+0x9", "0xffffffff81000019"])[1]
    assert [f.rule for f in address.findings] == ["KP408"] and address.findings[0].fix.safe
    assert address.findings[0].fix.replacement == "demo_read+0x9"
    assert "KP409" in [f.rule for f in duplicate.findings]
    duplicate_fix = next(f for f in duplicate.findings if f.rule == "KP409").fix
    assert duplicate_fix.remove and not duplicate_fix.safe
