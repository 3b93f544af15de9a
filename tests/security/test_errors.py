"""Every error a line (issue #14, item 6): each case ends with exit status 2 and one
`probelint: error:` line, or a finding, never an internal error, a traceback or raw control
characters on the terminal. Run as a user runs probelint (`tests.security._run`)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from probelint.image.elf import ElfFile
from tests.security._run import IMAGE, PROBES, ROOT, one_error, probelint

DIGITS = "1" * 5000  # past Python's 4300-digit int-string limit


@pytest.mark.parametrize(("name", "text"), [
    ("long.kprobes", f"demo_read+{DIGITS}\n"),
    ("long.sh", f"perf probe -a demo_read+{DIGITS}\necho 'p:e demo_read+{DIGITS}' > kprobe_events\n"),
    ("long.stp", f'probe kernel.statement("demo_read@demo.c:{DIGITS}") {{ }}\n'),
    ("long.bt", f"kprobe:demo_read+{DIGITS} {{ }}\n"),
])
def test_offset_of_thousands_of_digits_is_a_finding(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    proc = probelint("--no-cache", IMAGE, tmp_path / name)
    assert proc.returncode == 1 and proc.stderr == "" and "[KP001]" in proc.stdout, proc.stderr[-500:]


def test_elfclass32_is_named(tmp_path: Path) -> None:
    data = bytearray(IMAGE.read_bytes())
    data[4] = 1  # EI_CLASS = ELFCLASS32, still EM_X86_64
    (tmp_path / "i386.elf").write_bytes(data)
    line = one_error(probelint("--no-cache", tmp_path / "i386.elf", PROBES), "ELFCLASS32")
    assert "unsupported architecture EM_X86_64" not in line


def test_rela_section_of_a_partial_entry(build_kernel: Callable[..., Path], tmp_path: Path) -> None:
    obj = build_kernel("    .text\nFUNC mod_fn\n    call printk\n    ret\n", module=True)
    elf = ElfFile(obj)
    rela = next(s for s in elf.sections if s.type == 4)
    shoff = struct.unpack_from("<Q", elf._map, 0x28)[0]
    data = bytearray(obj.read_bytes())
    size_at = shoff + rela.index * 64 + 32  # Elf64_Shdr.sh_size
    struct.pack_into("<Q", data, size_at, rela.size - 1)
    ko = tmp_path / "mod.ko"
    ko.write_bytes(data)
    (tmp_path / "p.kprobes").write_text("mod_fn\n")
    one_error(probelint("--no-cache", ko, tmp_path / "p.kprobes"), "mod.ko: corrupt ELF", "not a whole number")


def test_probe_path_longer_than_path_max(tmp_path: Path) -> None:
    one_error(probelint("--no-cache", IMAGE, "/".join(["d" * 200] * 30) + ".kprobes"), "File name too long")


@pytest.mark.parametrize("setting", [
    "kernel = 3", "kernel = [3]", "select = 3", "select = [1]", "ignore = {a = 1}", "fail-level = 3",
    "fail-level = []", "cpu-profile = 3", "cpu-profile = []", "severity = 3", "severity = {KP101 = 3}",
    "severity = {KP101 = []}",
])
def test_config_value_of_the_wrong_type(tmp_path: Path, setting: str) -> None:
    (tmp_path / "probelint.toml").write_text(f"[tool.probelint]\n{setting}\n")
    one_error(probelint("--no-cache", IMAGE, PROBES, cwd=tmp_path), "probelint.toml: ", setting.split()[0])


@pytest.mark.parametrize("text", ["tool = 3\n", "[tool]\nprobelint = 3\n"])
def test_config_table_of_the_wrong_type(tmp_path: Path, text: str) -> None:
    (tmp_path / "pyproject.toml").write_text(text.replace("tool = 3", "[tool]\nprobelint = [1]"))
    one_error(probelint("--no-cache", IMAGE, PROBES, cwd=tmp_path), "[tool.probelint] must be a table")


def test_kernel_with_a_tilde_is_in_home(tmp_path: Path) -> None:
    (tmp_path / "probelint.toml").write_text('[tool.probelint]\nkernel = ["~/vmlinux", "rel/vmlinux"]\n')
    proc = probelint("--show-config", cwd=tmp_path)
    kernel = next(line for line in proc.stdout.splitlines() if line.startswith("kernel = "))
    assert json.loads(kernel.split(" = ", 1)[1]) == [str(Path.home() / "vmlinux"), str(tmp_path / "rel/vmlinux")]


def test_explain_and_map_on_bad_images(tmp_path: Path) -> None:
    bad = tmp_path / "bad.elf"
    bad.write_bytes(IMAGE.read_bytes()[:100])
    one_error(probelint("explain", "--no-cache", bad, "demo_read"), "bad.elf")
    one_error(probelint("map", "--no-cache", bad), "bad.elf")
    one_error(probelint("map", "--query", "demo_read", bad), "bad.elf")


@pytest.mark.parametrize("option", ["-o", "--html", "--svg"])
def test_map_to_an_unwritable_output(tmp_path: Path, option: str) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "out"  # a directory that is a file
    one_error(probelint("map", "--no-cache", IMAGE, "--function", "demo_read", option, out, "-j", "1"),
              f"{out}: cannot write")


@pytest.mark.parametrize("content", [None, "", "[1]\n", "{}\n", '{"cpus": 3}\n'])
def test_vmtest_report_that_is_not_one(tmp_path: Path, content: str | None) -> None:
    report = tmp_path / "report.json"
    if content is None:
        os.mkfifo(report)
    else:
        report.write_text(content)
    one_error(probelint("vmtest", "--from-json", report, timeout=20), "report.json")


def test_vmtest_with_special_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    one_error(probelint("vmtest", "--dry-run", "--vmlinux", tmp_path / "fifo", PROBES, timeout=20), "a FIFO")
    one_error(probelint("vmtest", "--dry-run", "--vmlinux", IMAGE, tmp_path / "fifo", timeout=20), "a FIFO")


def test_python_m_vmtest_has_the_same_handling(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text("[]\n")
    proc = subprocess.run([sys.executable, "-m", "probelint.vmtest", "--from-json", tmp_path / "r.json"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    one_error(proc, "r.json")


ESCAPES = "x\x1b[31mred\x07\u202egnp.kprobes"


def test_control_characters_in_names_are_escaped(tmp_path: Path) -> None:
    probes = tmp_path / ESCAPES
    probes.write_text("demo_read+0x1\x1b]0;title\x07\n")
    for fmt in ("text", "github"):
        proc = probelint("--no-cache", "--format", fmt, IMAGE, probes)
        assert proc.returncode == 1 and ("[KP" in proc.stdout or "::error" in proc.stdout), proc.stderr
        assert not any(c in proc.stdout for c in "\x1b\x07\u202e"), proc.stdout
        assert "\\x1b[31mred" in proc.stdout
    line = one_error(probelint("--no-cache", IMAGE, tmp_path / ("missing" + ESCAPES)))
    assert not any(c in line for c in "\x1b\x07\u202e") and "\\x1b" in line


def test_github_annotations_cannot_be_injected(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a\n::error file=x::forged\r::warning::forged\n.kprobes").write_text("demo_read+0x1\n")
    proc = probelint("--no-cache", "--format", "github", IMAGE, tree)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("::notice ") and lines[1].startswith("::error file="), lines
    assert "forged" in lines[1] and not any(line.startswith("::error file=x") for line in lines)
