"""The command line as users and CI run it: exit codes, input errors, formats."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from probelint.cli import main
from tests.conftest import DEMO, ROOT

ELF = DEMO / "demo.elf"
SCHEMA = json.loads((ROOT / "probelint" / "schema" / "report.schema.json").read_text())


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probelint", *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT)


def test_demo_reports_findings_and_exits_1():
    proc = run(str(ELF), str(DEMO / "probes.txt"))
    assert proc.returncode == 1, proc.stderr
    assert "probes.txt:4:1: error: demo_read+0x7 is not on an instruction boundary" in proc.stdout
    assert "[KP104]" in proc.stdout and "[KP102]" in proc.stdout and "[KP001]" in proc.stdout


def test_clean_probes_exit_0(tmp_path):
    probes = tmp_path / "ok.txt"
    probes.write_text("demo_read+0x5\nkprobe:demo_write+0x5\n")
    proc = run(str(ELF), str(probes))
    assert proc.returncode == 0, proc.stdout
    assert "2 probes: 2 register" in proc.stdout


def test_fail_level_warning_fails_on_warnings(tmp_path):
    probes = tmp_path / "octal.txt"
    probes.write_text("demo_read+05\n")  # octal warning, but a valid boundary
    assert run(str(ELF), str(probes)).returncode == 0
    assert run("--fail-level", "warning", str(ELF), str(probes)).returncode == 1


def test_stdin_and_several_files(tmp_path):
    other = tmp_path / "b.txt"
    other.write_text("demo_write+0x6\n")
    proc = run(str(ELF), "-", str(other), "--format", "json", stdin="demo_read+0x7\n")
    data = json.loads(proc.stdout)
    assert [p["file"] for p in data["probes"]] == ["-", str(other)]


def test_json_matches_schema_and_keeps_input_order():
    proc = run("--format", "json", str(ELF), str(DEMO / "probes.txt"))
    data = json.loads(proc.stdout)
    jsonschema.validate(data, SCHEMA)
    specs = [p["spec"] for p in data["probes"]]
    assert specs[:3] == ["demo_read", "demo_read+0x5", "demo_read+0x7"]
    first = data["probes"][0]
    assert first["address"] == "0xffffffff81000010" and first["verdict"]["ftrace"] is True
    bad = data["probes"][2]
    assert bad["verdict"] == {"registers": False, "errno": "EILSEQ", "optimized": False, "ftrace": False}


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing.elf", "cannot open"),
        (lambda d: _write(d / "empty", b""), "not an ELF file"),
        (lambda d: _write(d / "trunc.elf", ELF.read_bytes()[:200]), "corrupt ELF"),
        (lambda d: _write(d / "garbage.elf", b"\x7fELF" + b"\xff" * 60), "corrupt ELF"),
    ],
)
def test_bad_images_are_one_line_errors(tmp_path, make, expected):
    path = make(tmp_path)
    probes = _write(tmp_path / "p.txt", b"demo_read\n")
    proc = run(str(path), str(probes))
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_wrong_architecture(tmp_path):
    src = _write(tmp_path / "a.S", b".text\n.globl f\nf: ret\n")
    obj = tmp_path / "a.o"
    subprocess.run(["gcc", "-m32", "-c", src, "-o", obj], check=True)
    proc = run(str(obj), str(_write(tmp_path / "p.txt", b"f\n")))
    assert proc.returncode == 2 and "unsupported architecture" in proc.stderr


def test_binary_probe_file(tmp_path):
    proc = run(str(ELF), str(_write(tmp_path / "bin.txt", b"\xff\xfe\x00garbage")))
    assert proc.returncode == 2 and "not a text file" in proc.stderr


def test_rules_and_rule_pages(capsys):
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    assert "KP104" in out and "not-insn-boundary" in out
    assert main(["rule", "KP104"]) == 0
    assert "can_probe" in capsys.readouterr().out
    assert main(["rule", "KP999"]) == 2


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_several_kernels_side_by_side(build_kernel, tmp_path):
    """Two vmlinux images in one run: checked in parallel, one report per kernel."""
    banner = 'BANNER "Linux version 6.12.1-test (gcc) #1 SMP"\n'
    body = "    .text\nFUNC f\n    ENDBR\n    FENTRY\n    push %rbp\n    pop %rbp\n    ret\n"
    old, new = build_kernel(body.replace("    ENDBR\n", "")), build_kernel(banner + body)
    probes = _write(tmp_path / "p.txt", b"f+4\n")
    proc = run("--format", "json", str(old), str(new), str(probes))
    data = json.loads(proc.stdout)
    jsonschema.validate(data, SCHEMA)
    verdicts = [k["probes"][0]["verdict"] for k in data["kernels"]]
    assert verdicts[0]["errno"] == "EILSEQ"  # no IBT: +4 is inside the fentry call
    assert verdicts[1]["ftrace"]  # 6.12 with IBT: +4 is the entry, the fentry site
    text = run(str(old), str(new), str(probes)).stdout
    assert text.count("== kernel ") == 2


def test_closed_pipe_is_not_an_error():
    proc = subprocess.run(f"{sys.executable} -m probelint rules | head -1", shell=True, capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.stdout.startswith("KP001") and "Traceback" not in proc.stderr


def test_not_checked_probes_are_counted_apart(tmp_path):
    probes = tmp_path / "p.txt"
    probes.write_text("demo_read+0x5\ndemo_read+0x7\nxfs:xfs_buf_read_map\n")  # xfs.ko not given: deferred
    proc = run(str(ELF), str(probes), "--modules", str(tmp_path))
    assert "3 probes: 1 register (1 optimized, 0 ftrace-based), 1 refused, 1 not checked" in proc.stdout
    data = json.loads(run("--format", "json", str(ELF), str(probes), "--modules", str(tmp_path)).stdout)
    jsonschema.validate(data, SCHEMA)
    assert [p["verdict"]["registers"] for p in data["probes"]] == [True, False, None]
    sarif = json.loads(run("--format", "sarif", str(ELF), str(probes), "--modules", str(tmp_path)).stdout)
    deferred = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "KP402"]
    assert deferred and deferred[0]["properties"]["registers"] is None


@pytest.mark.parametrize("command", [["explain"], ["map", "--function", "demo_read", "-o", "{tmp}/m.gz"], []])
def test_kernel_options_are_the_same_for_every_command(command, tmp_path):
    """--cpu-profile, --cache-dir, --no-cache, -j, --config: declared once, taken by the lint run,
    explain and map alike."""
    cache = tmp_path / "cache"
    (tmp_path / "p.txt").write_text("demo_read+0x6\n")
    target = [] if command[:1] == ["map"] else [str(tmp_path / "p.txt") if not command else "demo_read+0x6"]
    args = [c.format(tmp=tmp_path) for c in command] + ["--cache-dir", str(cache), "--cpu-profile", "EPYC-Rome",
                                                         "-j", "1", str(ELF), *target]
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    assert any(cache.iterdir())  # the index went where it was told
