"""--modules DIR / --loaded: which modules the kernel has loaded decides uniqueness and MOD: probes."""

import shutil
import subprocess
import sys

from tests.conftest import ROOT

VMLINUX = """
    .text
FUNC shared_name
    FENTRY
    push %rbp
    pop %rbp
    ret
"""
MODULE = """
    .text
FUNC shared_name
    FENTRY
    ret
FUNC mod_only
    FENTRY
    push %rbp
    pop %rbp
    ret
"""


def run(*args):
    return subprocess.run([sys.executable, "-m", "probelint", "--format", "json", *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_loaded_module_makes_a_name_ambiguous(build_kernel, tmp_path):
    import json

    vmlinux = build_kernel(VMLINUX)
    mods = tmp_path / "mods" / "kernel" / "drivers"
    mods.mkdir(parents=True)
    shutil.copy(build_kernel(MODULE, module=True), mods / "mymod.ko")
    probes = tmp_path / "p.txt"
    probes.write_text("shared_name+5\nmymod:mod_only+5\n")
    alone = json.loads(run(str(vmlinux), str(probes), "--modules", str(tmp_path / "mods")).stdout)
    # the MOD: probe brings mymod in, and with it a second shared_name
    assert alone["probes"][0]["verdict"]["errno"] == "EADDRNOTAVAIL"
    assert alone["probes"][1]["verdict"]["registers"] and alone["probes"][1]["module"] == "mymod"
    probes.write_text("shared_name+5\n")
    unique = json.loads(run(str(vmlinux), str(probes), "--modules", str(tmp_path / "mods")).stdout)
    assert unique["probes"][0]["verdict"]["registers"]
    loaded = json.loads(run(str(vmlinux), str(probes), "--modules", str(tmp_path / "mods"), "--loaded", "mymod").stdout)
    assert loaded["probes"][0]["verdict"]["errno"] == "EADDRNOTAVAIL"


def test_unknown_loaded_module_is_an_input_error(build_kernel, tmp_path):
    probes = tmp_path / "p.txt"
    probes.write_text("shared_name\n")
    proc = run(str(build_kernel(VMLINUX)), str(probes), "--modules", str(tmp_path), "--loaded", "nosuch")
    assert proc.returncode == 2 and "module nosuch not found" in proc.stderr


def test_compressed_modules(build_kernel, tmp_path):
    """Distributions install modules as .ko.xz / .ko.gz: read them as the .ko inside."""
    import gzip
    import json
    import lzma

    raw = build_kernel(MODULE, module=True).read_bytes()
    (tmp_path / "mymod.ko.xz").write_bytes(lzma.compress(raw))
    (tmp_path / "other.ko.gz").write_bytes(gzip.compress(raw))
    probes = tmp_path / "p.txt"
    probes.write_text("mymod:mod_only+5\nother:mod_only+5\n")
    data = json.loads(run(str(tmp_path / "mymod.ko.xz"), str(tmp_path / "other.ko.gz"), str(probes)).stdout)
    assert [p["module"] for p in data["probes"]] == ["mymod", "other"]
    assert all(p["verdict"]["registers"] for p in data["probes"])
    (tmp_path / "bad.ko.xz").write_bytes(b"not xz at all")
    proc = run(str(tmp_path / "bad.ko.xz"), str(probes))
    assert proc.returncode == 2 and "cannot decompress" in proc.stderr


def test_a_function_of_an_unloaded_module_is_named_with_its_module(build_kernel, tmp_path):
    """KP101 on a function only a module of the tree defines says which .ko, offers MOD:SYM (and
    --loaded); the tree's names are read once and kept in the cache, as data."""
    import json

    mods = tmp_path / "mods" / "kernel" / "fs"
    mods.mkdir(parents=True)
    shutil.copy(build_kernel(MODULE, module=True), mods / "mymod.ko")
    probes = tmp_path / "p.txt"
    probes.write_text("mod_only\nnot_anywhere\n")
    args = [str(build_kernel(VMLINUX)), str(probes), "--modules", str(tmp_path / "mods"), "--cache-dir",
            str(tmp_path / "cache")]
    for _ in range(2):  # built, then read back from the cache
        found = json.loads(run(*args).stdout)["probes"]
        hit, miss = (p["findings"][0] for p in found)
        assert hit["rule"] == miss["rule"] == "KP101"
        assert "did you mean mymod:mod_only? (mod_only is in module mymod (mymod.ko)" in hit["notes"][0]
        assert "--loaded mymod" in hit["notes"][0]
        assert not miss["notes"]
    assert next(p.name for p in (tmp_path / "cache" / "module-names").iterdir()).endswith(".index")
    diff = subprocess.run([sys.executable, "-m", "probelint", *args, "--diff", "--unsafe-fixes"], capture_output=True,
                          text=True, cwd=ROOT).stdout
    assert "+mymod:mod_only\n" in diff and "+mymod:not_anywhere" not in diff
    probes.write_text("mymod:mod_only\n")  # as offered: checked in the module
    assert json.loads(run(*args).stdout)["probes"][0]["verdict"]["registers"]


def test_a_compressed_module_alone_is_decompressed_once(build_kernel, tmp_path, monkeypatch):
    """A .ko.xz given without its vmlinux: its vermagic is read (to find the vmlinux) from the
    image that is then loaded, not from a second decompression."""
    import lzma

    from probelint.config import Config
    from probelint.image import elf
    from probelint.pipeline import load

    ko = tmp_path / "mymod.ko.xz"
    ko.write_bytes(lzma.compress(build_kernel(MODULE, module=True).read_bytes()))
    calls = []
    decompress = elf.decompress

    def counted(where, *args, **kwargs):
        calls.append(where)
        return decompress(where, *args, **kwargs)

    monkeypatch.setattr(elf, "decompress", counted)
    kernel = load(Config(cache=False), [ko])
    assert [m.name for m in kernel.modules] == ["mymod"]
    assert calls == [str(ko)]
