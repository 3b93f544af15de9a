"""The kernel as installed: a bzImage (/boot/vmlinuz) with its System.map or a kallsyms dump,
modules as installed, and discovery of the running kernel's images."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import probelint
from probelint.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"
SLIDE = 0x1C00000


def bzimage(payload: bytes, setup_sects: int = 3, version: int = 0x20F) -> bytes:
    """A bzImage as arch/x86/boot/header.S lays it out, holding `payload` (compressed, with the
    4-byte size the build appends)."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x1FE:0x200] = b"\x55\xaa"
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    offset = 0x2C0  # the decompressor's own code comes first
    struct.pack_into("<II", setup, 0x248, offset, len(payload))
    return bytes(setup) + bytes(offset) + payload + bytes(64)


def compressed(data: bytes, kind: str) -> bytes:
    packed = {"gzip": lambda d: gzip.compress(d, mtime=0), "xz": lambda d: lzma.compress(d, check=lzma.CHECK_CRC32),
              "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE), "bzip2": bz2.compress}[kind](data)
    return packed + len(data).to_bytes(4, "little")


def system_map(elf: Path) -> str:
    """scripts/mksysmap: `nm -n` less a/N/U/w symbols."""
    out = subprocess.run(["nm", "-n", str(elf)], capture_output=True, text=True, check=True).stdout
    return "".join(line + "\n" for line in out.splitlines() if len(line.split()) == 3 and line.split()[1] not in "aNUw")


def kallsyms_dump(kernel_map: str, slide: int) -> str:
    """The map as /proc/kallsyms of a kernel booted `slide` bytes up shows it."""
    lines = []
    for line in kernel_map.splitlines():
        address, letter, name = line.split()
        lines.append(f"{int(address, 16) + slide:016x} {letter} {name}")
    lines.append(f"{0xFFFFFFFFC0000000:016x} t some_module_function\t[some_module]")
    return "\n".join(lines) + "\n"


def verdicts(images: list[Path], tmp_path: Path) -> list[tuple]:
    probes = [line.split("#")[0].strip() for line in (DEMO / "probes.txt").read_text().splitlines()]
    report = probelint.check(images, [p for p in probes if p], hints="never", cache=True, cache_dir=tmp_path / "cache")
    return [(r.verdict.registers, r.verdict.errno, r.verdict.optimized, r.verdict.ftrace, tuple(r.verdict.reasons),
             tuple(f.message for f in r.findings)) for r in report]


@pytest.fixture(scope="module")
def demo_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("map") / "System.map-demo"
    path.write_text(system_map(DEMO / "demo.elf"))
    return path


def stripped(tmp_path: Path) -> bytes:
    out = tmp_path / "vmlinux.bin"
    subprocess.run(["objcopy", "-R", ".comment", "-S", str(DEMO / "demo.elf"), str(out)], check=True)
    return out.read_bytes()


@pytest.mark.parametrize("kind", ["gzip", "xz", "lzma", "bzip2"])
def test_vmlinuz_and_system_map_give_the_vmlinux_verdicts(tmp_path, demo_map, kind):
    vmlinuz = tmp_path / "vmlinuz-demo"
    vmlinuz.write_bytes(bzimage(compressed(stripped(tmp_path), kind)))
    expected = verdicts([DEMO / "demo.elf"], tmp_path)
    assert verdicts([vmlinuz, demo_map], tmp_path) == expected
    assert verdicts([vmlinuz, demo_map], tmp_path) == expected  # warm: from the cached ELF and index


def test_kallsyms_dump_with_a_kaslr_slide(tmp_path, demo_map):
    vmlinuz = tmp_path / "vmlinuz-demo"
    vmlinuz.write_bytes(bzimage(compressed(stripped(tmp_path), "xz")))
    dump = tmp_path / "kallsyms.txt"
    dump.write_text(kallsyms_dump(demo_map.read_text(), SLIDE))
    assert verdicts([vmlinuz, dump], tmp_path) == verdicts([DEMO / "demo.elf"], tmp_path)


def test_system_map_found_beside_the_image(tmp_path, demo_map):
    (tmp_path / "boot").mkdir()
    vmlinuz = tmp_path / "boot" / "vmlinuz-9.9.9-demo"
    vmlinuz.write_bytes(bzimage(compressed(stripped(tmp_path), "gzip")))
    with pytest.raises(InputError, match=r"without symbols: name its System\.map or a kallsyms dump"):
        probelint.check([vmlinuz], ["demo_read"])
    (tmp_path / "boot" / "System.map-9.9.9-demo").write_text(demo_map.read_text())
    assert probelint.check([vmlinuz], ["demo_read+0x5"])[0].verdict.registers


def test_debian_placeholder_system_map_says_what_to_do(tmp_path):
    (tmp_path / "boot").mkdir()
    vmlinuz = tmp_path / "boot" / "vmlinuz-9.9.9-demo"
    vmlinuz.write_bytes(bzimage(compressed(stripped(tmp_path), "gzip")))
    (tmp_path / "boot" / "System.map-9.9.9-demo").write_text(
        "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n")
    with pytest.raises(InputError, match=r"Debian's placeholder.*-dbg package.*/proc/kallsyms"):
        probelint.check([vmlinuz], ["demo_read"])


def test_dump_without_addresses_or_of_another_kernel(tmp_path, demo_map):
    vmlinuz = tmp_path / "vmlinuz-demo"
    vmlinuz.write_bytes(bzimage(compressed(stripped(tmp_path), "gzip")))
    hidden = tmp_path / "kallsyms-user.txt"
    hidden.write_text("".join(f"{0:016x} {letter} {name}\n"
                              for _, letter, name in map(str.split, demo_map.read_text().splitlines())))
    with pytest.raises(InputError, match="every address is 0: kptr_restrict"):
        probelint.check([vmlinuz, hidden], ["demo_read"])
    other = tmp_path / "System.map-other"
    other.write_text(demo_map.read_text() + f"{0xFFFFFFFF81000010:016x} D linux_banner\n")  # points at code
    with pytest.raises(InputError, match="not the symbols of"):
        probelint.check([vmlinuz, other], ["demo_read"])


def test_bzimage_errors_are_one_line(tmp_path):
    old = tmp_path / "vmlinuz-old"
    old.write_bytes(bzimage(compressed(stripped(tmp_path), "gzip"), version=0x207))
    lzo = tmp_path / "vmlinuz-lzo"
    lzo.write_bytes(bzimage(b"\x89LZO\x00\r\n\x1a\n" + bytes(64)))
    broken = tmp_path / "vmlinuz-broken"
    broken.write_bytes(bzimage(compressed(stripped(tmp_path), "xz")[:200] + bytes(8)))
    for image, message in ((old, "older than 2.08"), (lzo, "lzo-compressed"), (broken, "cannot decompress (xz)")):
        proc = subprocess.run([sys.executable, "-m", "probelint", "--no-cache", str(image), str(DEMO / "probes.txt")],
                              capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_damaged_cached_image_is_rebuilt(tmp_path, demo_map):
    vmlinuz = tmp_path / "vmlinuz-demo"
    vmlinuz.write_bytes(bzimage(compressed(stripped(tmp_path), "gzip")))
    expected = verdicts([vmlinuz, demo_map], tmp_path)
    [cached] = (tmp_path / "cache" / "vmlinuz").glob("*.elf")
    data = bytearray(cached.read_bytes())
    data[0x1010] ^= 0xFF  # a byte of demo_read
    cached.write_bytes(bytes(data))
    assert verdicts([vmlinuz, demo_map], tmp_path) == expected
    assert cached.read_bytes() != bytes(data)


def test_modules_as_installed_beside_a_vmlinuz(tmp_path):
    from probelint.discover import default_module_dirs

    tree = tmp_path / "lib" / "modules" / "9.9.9-demo"
    (tree / "kernel").mkdir(parents=True)
    (tmp_path / "boot").mkdir()
    assert default_module_dirs(str(tmp_path / "boot" / "vmlinuz-9.9.9-demo")) == [tree]
    fedora = tmp_path / "usr" / "lib" / "modules" / "9.9.9-demo"
    fedora.mkdir(parents=True)
    assert default_module_dirs(str(fedora / "vmlinuz")) == [fedora]


def test_discovery_says_why_each_place_was_not_taken(tmp_path, demo_map):
    from probelint.discover import find_running_kernel

    release = "9.9.9-demo"
    no_kallsyms = tmp_path / "no-kallsyms"
    with pytest.raises(InputError, match=f"no -dbg vmlinux of {release}.*no vmlinuz of {release}"):
        find_running_kernel(release, tmp_path, no_kallsyms)
    (tmp_path / "boot").mkdir()
    vmlinuz = tmp_path / "boot" / f"vmlinuz-{release}"
    vmlinuz.write_bytes(bzimage(compressed(stripped(tmp_path), "gzip")))
    placeholder = tmp_path / "boot" / f"System.map-{release}"
    placeholder.write_text("ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n")
    with pytest.raises(InputError, match=r"Debian's placeholder.*hides its addresses"):
        find_running_kernel(release, tmp_path, no_kallsyms)
    dump = tmp_path / "kallsyms"
    dump.write_text(kallsyms_dump(demo_map.read_text(), SLIDE))
    images, why = find_running_kernel(release, tmp_path, dump)
    assert images == [vmlinuz, dump] and "Debian's placeholder" in why[1]
    placeholder.write_text(demo_map.read_text())
    assert find_running_kernel(release, tmp_path, dump)[0] == [vmlinuz, placeholder]
    debug = tmp_path / "usr" / "lib" / "debug" / "boot" / f"vmlinux-{release}"
    debug.parent.mkdir(parents=True)
    debug.write_bytes((DEMO / "demo.elf").read_bytes())
    assert find_running_kernel(release, tmp_path, dump) == ([debug], [])


@pytest.mark.kernel
@pytest.mark.parametrize("package", ["linux-image-6.1.0-56-cloud-amd64", "linux-image-7.2.13+deb14-cloud-amd64"])
def test_debian_vmlinuz_agrees_with_the_dbg_vmlinux(package, tmp_path):
    """Every boundary of a sample of functions, through vmlinuz + System.map, vmlinuz + the
    kallsyms the booted guest showed root (vmtest --live-check --dump-kallsyms: nokaslr, 6.1 with
    the virtiofs modules loaded, 7.2 with xfs) and vmlinuz + a dump made from the -dbg vmlinux
    with a KASLR slide, against the -dbg vmlinux (the full sample: scripts/compare_inputs.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from compare_inputs import compare, kallsyms_dump, sample, verdicts

    from probelint.vmtest.download import (
        ensure_deb,
        ensure_debug_vmlinux,
        ensure_kernel,
        extract_members,
        kernel_abi,
        list_members,
    )

    abi = kernel_abi(package)
    vmlinux = ensure_debug_vmlinux(package)
    vmlinuz = ensure_kernel(package).bzimage  # the -unsigned package (6.x), linux-binary- (7.x)
    dbg = ensure_deb(f"linux-image-{abi}-dbg")
    system_map = next(m for m in list_members(dbg) if m.endswith((f"/System.map-{abi}", f"/{abi}/System.map")))
    reference_kernel = probelint.load_kernel([vmlinux])
    names = sample(reference_kernel, 25, seed=int(os.environ.get("PROBELINT_SEED", "3")))
    reference = verdicts(reference_kernel, names)
    dump = tmp_path / "kallsyms"
    dump.write_text(kallsyms_dump(reference_kernel))
    guest = tmp_path / "kallsyms.guest"
    guest.write_bytes(lzma.decompress((ROOT / "tests" / "data" / f"kallsyms-{abi}.xz").read_bytes()))
    for symbols in (extract_members(dbg, [system_map]) / system_map, guest, dump):
        kernel = probelint.load_kernel([vmlinuz, symbols], cache=True, cache_dir=tmp_path / "cache")
        total, equal, differ = compare(reference, verdicts(kernel, names))
        assert equal == total and not differ and total > 500
        assert list(kernel.config.describe()) == list(reference_kernel.config.describe())


def test_map_of_a_vmlinuz_takes_its_symbols_beside_it_or_named(tmp_path, demo_map):
    (tmp_path / "boot").mkdir()
    vmlinuz = tmp_path / "boot" / "vmlinuz-9.9.9-demo"
    vmlinuz.write_bytes(bzimage(compressed(stripped(tmp_path), "gzip")))
    dump = tmp_path / "kallsyms.txt"
    dump.write_text(kallsyms_dump(demo_map.read_text(), SLIDE))
    run = [sys.executable, "-m", "probelint", "map", "--no-cache", str(vmlinuz), "--function", "demo_read"]
    named = subprocess.run([*run[:5], str(vmlinuz), str(dump), *run[6:], "-o", str(tmp_path / "a.gz")],
                           capture_output=True, text=True, cwd=ROOT)
    assert named.returncode == 0, named.stderr
    (tmp_path / "boot" / "System.map-9.9.9-demo").write_text(demo_map.read_text())
    beside = subprocess.run([*run, "-o", str(tmp_path / "b.gz")], capture_output=True, text=True, cwd=ROOT)
    assert beside.returncode == 0, beside.stderr
    assert named.stdout == beside.stdout and "10 instruction boundaries" in named.stdout
