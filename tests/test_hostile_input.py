"""Corrupted kernel images: one line naming the file, exit 2 (or a verdict), never a traceback,
a hang or unbounded memory. Deterministic mutations of the demo image, each in its own process
under a 2 GiB address-space limit and a time limit."""

from __future__ import annotations

import random
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import DEMO, ROOT

CASES = 40


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _mutate(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    buf = bytearray(data)
    header_area = min(len(buf), 0x40 + 64 * 24)  # ELF header and the first section headers
    for _ in range(rng.choice([1, 4, 16, 64])):
        pos = rng.randrange(len(buf)) if rng.random() < 0.5 else rng.randrange(header_area)
        buf[pos] = rng.randrange(256)
    if rng.random() < 0.2:
        buf = buf[: rng.randrange(len(buf))]
    return bytes(buf)


def test_mutated_images(tmp_path):
    data = (DEMO / "demo.elf").read_bytes()
    probes = DEMO / "probes.txt"

    def run(seed: int) -> str | None:
        image = tmp_path / f"m{seed}.elf"
        image.write_bytes(_mutate(data, seed))
        try:
            proc = subprocess.run([sys.executable, "-m", "probelint", "--no-cache", str(image), str(probes)],
                                  capture_output=True, text=True, timeout=60, preexec_fn=_limit, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return f"seed {seed}: hang"
        err = proc.stderr.strip()
        broken = "Traceback" in err or "internal error" in err or len(err.splitlines()) > 1
        if proc.returncode not in (0, 1, 2) or broken:
            return f"seed {seed}: exit {proc.returncode}: {err[-300:]}"
        if proc.returncode == 2 and str(image) not in err:
            return f"seed {seed}: the error does not name the file: {err}"
        return None

    with ThreadPoolExecutor(2) as pool:
        failures = [f for f in pool.map(run, range(CASES)) if f]
    assert not failures, failures


@pytest.mark.parametrize("content", [b"\x7fELF", b"\x7fELF\x02\x01\x01" + b"\0" * 57, b"\x7fELF" + b"\xff" * 4096])
def test_tiny_and_garbage_headers(tmp_path, content):
    image = tmp_path / "bad.elf"
    image.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "probelint", str(image), str(DEMO / "probes.txt")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and str(image) in proc.stderr and "Traceback" not in proc.stderr


def test_stripped_image_says_what_to_pass(tmp_path):
    stripped = tmp_path / "stripped.elf"
    subprocess.run(["strip", "-o", str(stripped), str(DEMO / "demo.elf")], check=True)
    # --no-cache: an index made from the unstripped image of the same build-id would serve it
    proc = subprocess.run([sys.executable, "-m", "probelint", "--no-cache", str(stripped), str(DEMO / "probes.txt")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "no .symtab" in proc.stderr and "-dbg package" in proc.stderr


@pytest.mark.parametrize(("content", "message"), [(b"demo_read\n\0\0binary", "NUL bytes"),
                                                  (b"\xff\xfe", "not a text file"),
                                                  (b"demo_read\n" * (7 << 20), "larger than 64 MiB")],
                         ids=["nul", "not-utf8", "huge"])
def test_unusable_probe_files(tmp_path, content, message):
    probes = tmp_path / "p.txt"
    probes.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "probelint", str(DEMO / "demo.elf"), str(probes)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and message in proc.stderr and str(probes) in proc.stderr


def test_running_kernel_image_is_found_where_perf_looks(tmp_path):
    from probelint.discover import find_running_kernel_image
    from probelint.errors import InputError

    with pytest.raises(InputError, match=r"linux-image-6\.1\.0-99-cloud-amd64-dbg"):
        find_running_kernel_image("6.1.0-99-cloud-amd64", root=tmp_path)
    image = tmp_path / "usr/lib/debug/boot/vmlinux-6.1.0-99-cloud-amd64"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"\x7fELF")
    assert find_running_kernel_image("6.1.0-99-cloud-amd64", root=tmp_path) == image


@pytest.mark.kernel
def test_mutated_real_module(debian, tmp_path):
    """Byte flips in the ELF and section headers, and truncations, of the real xfs.ko."""
    data = debian.xfs.read_bytes()
    probes = tmp_path / "p.txt"
    probes.write_text("xfs:xfs_buf_read_map+5\nxfs_buf_read_map\n")
    failures = []
    for seed in range(8):
        rng = random.Random(seed)
        buf = bytearray(data)
        shoff = int.from_bytes(data[0x28:0x30], "little")
        for _ in range(rng.choice([1, 8, 32])):
            area = rng.choice([(0, 0x40), (shoff, min(len(buf), shoff + 64 * 40))])
            buf[rng.randrange(*area)] = rng.randrange(256)
        if seed % 4 == 3:
            buf = buf[: rng.randrange(len(buf))]
        image = tmp_path / f"xfs{seed}.ko"
        image.write_bytes(bytes(buf))
        proc = subprocess.run([sys.executable, "-m", "probelint", "--no-cache", str(image), str(probes)],
                              capture_output=True, text=True, timeout=120, preexec_fn=_limit, cwd=ROOT)
        err = proc.stderr.strip()
        broken = "Traceback" in err or "internal error" in err or len(err.splitlines()) > 1
        if proc.returncode not in (0, 1, 2) or broken:
            failures.append(f"seed {seed}: exit {proc.returncode}: {err[-300:]}")
    assert not failures, failures
