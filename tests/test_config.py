"""[tool.probelint] settings, their precedence under command-line flags, and bad settings."""

import json
import shutil
import subprocess
import sys

from tests.conftest import DEMO, ROOT


def run(cwd, *args):
    return subprocess.run([sys.executable, "-m", "probelint", *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def project(tmp_path, table: str):
    shutil.copy(DEMO / "demo.elf", tmp_path / "demo.elf")
    (tmp_path / "probes.txt").write_text("demo_read+0x7\ndemo_read+05\nshow\n")
    (tmp_path / "pyproject.toml").write_text(f"[project]\nname = 'x'\n[tool.probelint]\n{table}\n")
    return tmp_path


def test_settings_from_pyproject(tmp_path):
    proj = project(tmp_path, 'kernel = "demo.elf"\nignore = ["KP102"]\nfail-level = "warning"\n'
                             '[tool.probelint.severity]\nKP104 = "info"\n')
    proc = run(proj, "--format", "json", "probes.txt")
    data = json.loads(proc.stdout)
    rules = [f["rule"] for p in data["probes"] for f in p["findings"]]
    assert "KP102" not in rules and "KP104" in rules
    assert next(f for p in data["probes"] for f in p["findings"] if f["rule"] == "KP104")["severity"] == "info"
    assert proc.returncode == 1  # the KP002 octal warning fails at fail-level warning


def test_flags_override_settings(tmp_path):
    proj = project(tmp_path, 'kernel = "demo.elf"\nfail-level = "warning"\nselect = ["KP0"]\n')
    assert run(proj, "probes.txt").returncode == 1
    assert run(proj, "--fail-level", "error", "probes.txt").returncode == 0
    shown = run(proj, "--show-config", "--cpu-profile", "rethunk").stdout
    assert 'cpu-profile = "EPYC-Rome"' in shown and "pyproject.toml" in shown and 'select = ["KP0"]' in shown


def test_bad_settings_are_one_line_errors(tmp_path):
    proj = project(tmp_path, 'kernal = "demo.elf"\n')
    proc = run(proj, "probes.txt")
    assert proc.returncode == 2 and "unknown [tool.probelint] key kernal" in proc.stderr
    (tmp_path / "pyproject.toml").write_text("[tool.probelint\n")
    proc = run(proj, "probes.txt")
    assert proc.returncode == 2 and "invalid TOML" in proc.stderr and "Traceback" not in proc.stderr


def test_kernel_config_file_overrides_inference(tmp_path):
    dotconfig = tmp_path / "config-6.1"
    dotconfig.write_text("CONFIG_KPROBES_ON_FTRACE=y\n# CONFIG_OPTPROBES is not set\n")
    proc = run(tmp_path, "-v", "--config", str(dotconfig), str(DEMO / "demo.elf"), str(DEMO / "probes.txt"))
    assert f"{dotconfig}: CONFIG_OPTPROBES=n" in proc.stderr
    assert "kernel version: unknown (rules follow 6.1)" in proc.stderr and "cpu profile: qemu64" in proc.stderr


def test_subcommands_take_the_projects_cpu_profile(tmp_path):
    """`explain` and `map` follow [tool.probelint] cpu-profile too; a flag still wins."""
    proj = project(tmp_path, 'cpu-profile = "rethunk"\n')
    assert "cpu profile EPYC-Rome" in run(proj, "explain", "demo.elf", "demo_read+0x7").stdout
    assert "cpu profile Skylake-Client-v4" in run(proj, "explain", "--cpu-profile", "its", "demo.elf",
                                                  "demo_read+0x7").stdout
    mapped = run(proj, "map", "demo.elf", "--function", "demo_read", "-o", "m.gz")
    assert mapped.returncode == 0 and "[cpu profile: EPYC-Rome]" in mapped.stderr


def test_a_pyproject_that_never_names_probelint_is_not_parsed(tmp_path):
    """Most projects' pyproject.toml has nothing for probelint: it is not parsed (nor tomllib
    imported), so not even a broken one stops the run; the search goes on to the parents."""
    proj = project(tmp_path, 'kernel = "demo.elf"\nfail-level = "warning"\n')
    sub = proj / "sub"
    sub.mkdir()
    (sub / "pyproject.toml").write_text("[project\nname = 'other'\n")  # invalid, and not ours
    shown = run(sub, "--show-config").stdout
    assert str(proj / "pyproject.toml") in shown and 'fail-level = "warning"' in shown
    (sub / "pyproject.toml").write_text("[project\nname = 'probelint-demo'\n")  # names it: read, and refused
    assert "invalid TOML" in run(sub, "--show-config").stderr
