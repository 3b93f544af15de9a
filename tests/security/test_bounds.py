"""Hostile input within what probelint accepts: each case runs as the user runs it, in its own
process under a memory limit (RLIMIT_AS) and a time limit, and must end with a normal report or
one error line, its documented exit status, and a peak RSS under the stated bound."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from tests.conftest import DEMO
from tests.security._run import bounded as run
from tests.security._run import one_error

DEMO_ELF = str(DEMO / "demo.elf")
MiB = 1 << 20


def test_64k_bpftrace_tokens_are_read_in_linear_time(tmp_path):
    script = tmp_path / "many.bt"
    script.write_text("kprobe:x," * 65536 + " { }\n")  # was 17 s: each location counted from the start
    result = run(["--no-cache", "--format", "json", DEMO_ELF, str(script)], memory_mib=1536, seconds=15)
    assert result.returncode == 1 and result.stdout.count('"KP101"') == 65536, result.stderr[-500:]
    assert result.peak_mib < 600, result  # time: the CPU limit of `run` (quadratic reading took 17 s)


def test_unclosed_comments_are_blanked_in_linear_time(tmp_path):
    script = tmp_path / "comments.bt"
    script.write_text("/* " * 200_000 + "\n")  # each /* was searched to the end
    result = run(["--no-cache", DEMO_ELF, str(script)], memory_mib=1024, seconds=10)
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr[-500:]


def test_perf_probe_lines_past_the_probe_cap_end_with_one_line(tmp_path):
    script = tmp_path / "many.sh"
    script.write_text("perf probe -a x\n" * 200_000)  # did not finish in 300 s
    result = run(["--no-cache", DEMO_ELF, str(script)], memory_mib=1024, seconds=20)
    one_error(result, str(script), "more than 100000 probes")
    assert result.peak_mib < 300, result


def test_perf_probe_lines_are_read_in_linear_time(tmp_path):
    script = tmp_path / "some.sh"
    script.write_text("perf probe -a x\n" * 50_000)
    result = run(["--no-cache", DEMO_ELF, str(script)], memory_mib=1536, seconds=20)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-500:]


def test_1mb_probe_list_stays_under_150mb(tmp_path):
    probes = tmp_path / "x.txt"
    probes.write_text("x\n" * (MiB // 2))  # 524,288 probes: was 718 MB
    result = run(["--no-cache", "--format", "json", DEMO_ELF, str(probes)], memory_mib=1024, seconds=30)
    one_error(result, str(probes), "more than 100000 probes")
    assert result.peak_mib < 150, result


def test_64mb_probe_list_stays_under_1gb(tmp_path):
    probes = tmp_path / "x.txt"
    with open(probes, "w") as fh:
        for _ in range(64):
            fh.write("x\n" * (MiB // 2))  # 64 MiB, the largest probe file read: was 7.9 GB for 60 MB
    result = run(["--no-cache", DEMO_ELF, str(probes)], memory_mib=1536, seconds=60)
    one_error(result, str(probes), "more than 100000 probes")
    assert result.peak_mib < 1024, result


def test_probes_up_to_the_cap_are_checked(tmp_path):
    probes = tmp_path / "x.txt"
    probes.write_text("".join(f"x{i:08d}\n" for i in range(100_000)))  # 1 MB
    result = run(["--no-cache", "--format", "json", DEMO_ELF, str(probes)], memory_mib=1536, seconds=40)
    assert result.returncode == 1 and result.stdout.count('"KP101"') == 100_000, result.stderr[-500:]
    assert result.peak_mib < 400, result


def _sparse_elf(path: Path, sections: int) -> None:
    """The demo image's header declaring `sections` section headers (extended numbering: the
    count in section 0's sh_size) at the end of a sparse file that can hold them."""
    data = bytearray(Path(DEMO_ELF).read_bytes()[:64])
    shoff = 4096
    struct.pack_into("<Q", data, 0x28, shoff)  # e_shoff
    struct.pack_into("<HHH", data, 0x3A, 64, 0, 0)  # e_shentsize, e_shnum (0: extended), e_shstrndx
    with open(path, "wb") as fh:
        fh.write(data)
        fh.seek(shoff)
        fh.write(struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, sections, 0, 0, 0, 0))
        fh.truncate(shoff + sections * 64)


def test_sparse_elf_declaring_16m_section_headers(tmp_path):
    image = tmp_path / "sparse.elf"
    _sparse_elf(image, 16 << 20)  # 1 GiB of headers, all in the file: was 7 GB before the error
    probes = tmp_path / "p.txt"
    probes.write_text("x\n")
    # the address-space limit leaves room for mapping the 1 GiB file: its pages are never read
    result = run(["--no-cache", str(image), str(probes)], memory_mib=2048, seconds=20)
    one_error(result, str(image), "section headers")
    assert result.peak_mib < 200, result


@pytest.fixture(scope="module")
def zeros_gz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 MiB of zero bytes, gzipped to ~600 KB."""
    path = tmp_path_factory.mktemp("bomb") / "zeros.gz"
    block = bytes(64 * MiB)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        for _ in range(10):
            fh.write(block)
    return path


def test_map_query_on_a_gzip_bomb(tmp_path, zeros_gz):
    result = run(["map", "--query", "x+0", str(zeros_gz)], memory_mib=1024, seconds=30)
    one_error(result, str(zeros_gz), "larger than a map")
    assert result.peak_mib < 200, result


def test_map_query_on_a_bomb_of_empty_lines(tmp_path):
    bomb = tmp_path / "lines.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as fh:
        for _ in range(4):
            fh.write(b"\n" * (64 * MiB))  # 256 Mi lines: minutes one by one
    result = run(["map", "--query", "x+0", str(bomb)], memory_mib=1024, seconds=20)
    one_error(result, str(bomb), "larger than a map")


def test_compressed_module_bomb(tmp_path, zeros_gz):
    module = tmp_path / "bomb.ko.gz"
    module.symlink_to(zeros_gz)
    probes = tmp_path / "p.txt"
    probes.write_text("x\n")
    result = run(["--no-cache", DEMO_ELF, str(module), str(probes)], memory_mib=1536, seconds=30)
    one_error(result, str(module), "decompresses to more than 512 MiB")
    assert result.peak_mib < 1100, result


def test_kernel_config_from_dev_zero(tmp_path):
    probes = tmp_path / "p.txt"
    probes.write_text("x\n")
    result = run(["--no-cache", "--config", "/dev/zero", DEMO_ELF, str(probes)], memory_mib=1024, seconds=20)
    one_error(result, "/dev/zero", "not a regular file")
    assert result.peak_mib < 200, result


def test_huge_settings_file(tmp_path):
    (tmp_path / "probelint.toml").write_text("# padding\n" * 300_000)  # 3 MB
    probes = tmp_path / "p.txt"
    probes.write_text("x\n")
    result = run(["--no-cache", DEMO_ELF, str(probes)], memory_mib=1024, seconds=20, cwd=tmp_path)
    one_error(result, "probelint.toml", "larger than 1 MiB")


@pytest.mark.parametrize("pattern", ["(a+)+$", "(", "(\\\\w*_)*x$"])
def test_bcc_event_re_that_cannot_run_is_a_finding_not_a_hang(tmp_path, pattern):
    """bcc's event_re is matched against every traceable name: a pattern with nested repetition
    may backtrack exponentially, and one that is no regular expression fails bcc's re.compile."""
    tool = tmp_path / "tool.py"
    tool.write_text(f'from bcc import BPF\nb = BPF(text="")\nb.attach_kprobe(event_re=r"{pattern}", fn_name="f")\n')
    result = run(["--no-cache", "--format", "json", DEMO_ELF, str(tool)], memory_mib=1024, seconds=20)
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr[-500:]
    assert "is not run" in result.stdout or "cannot compile event_re" in result.stdout
