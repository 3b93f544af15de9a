"""Inputs walked and read safely, outputs written without following planted links (issue #14,
items 3 and 5): special files refused before they are opened, a walk that stays in its tree,
directories that cannot be listed reported, .ko files read as images, map outputs replaced
through a fresh temporary name. Each case is run as a user runs it (`tests.security._run`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from probelint.errors import InputError
from probelint.pipeline import read_texts
from tests.security._run import IMAGE, PROBES, one_error, probelint


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "probes.kprobes"
    os.mkfifo(path)
    return path


def test_fifo_as_probe_file_is_refused_not_waited_on(fifo: Path) -> None:
    one_error(probelint("--no-cache", IMAGE, fifo, timeout=20), str(fifo), "a FIFO, not a regular file")


def test_fifo_as_image_is_refused(fifo: Path) -> None:
    one_error(probelint("--no-cache", "--kernel", fifo, PROBES, timeout=20), "a FIFO")
    one_error(probelint("--no-cache", fifo, PROBES, timeout=20), "a FIFO")


def test_device_as_probe_file_is_refused() -> None:
    one_error(probelint("--no-cache", IMAGE, "/dev/zero", timeout=20), "/dev/zero: a character device")


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_special_file_as_dotconfig_is_refused(fifo: Path, special: str) -> None:
    path = fifo if special == "fifo" else special
    one_error(probelint("--no-cache", "--config", path, IMAGE, PROBES, timeout=20), f"{path}: a ")


def test_huge_dotconfig_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "config"
    with open(big, "wb") as fh:
        fh.truncate(64 << 20)  # sparse
    one_error(probelint("--no-cache", "--config", big, IMAGE, PROBES, timeout=20), "larger than")


@pytest.mark.parametrize("name", ["pyproject.toml", "probelint.toml"])
def test_fifo_as_config_file_is_refused(tmp_path: Path, name: str) -> None:
    os.mkfifo(tmp_path / name)
    one_error(probelint("--no-cache", IMAGE, PROBES, cwd=tmp_path, timeout=20), name, "a FIFO")


def test_huge_config_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.probelint]\n" + "# padding\n" * 200_000)
    one_error(probelint("--no-cache", IMAGE, PROBES, cwd=tmp_path, timeout=20), "pyproject.toml: larger than")


@pytest.mark.parametrize("name", ["empty.ko", "garbage.ko"])
def test_ko_that_is_not_elf_is_an_image_error(tmp_path: Path, name: str) -> None:
    ko = tmp_path / name
    ko.write_bytes(b"" if name == "empty.ko" else b"not an elf\n")
    one_error(probelint("--no-cache", IMAGE, ko, PROBES), str(ko), "empty file" if name == "empty.ko" else "not an ELF")
    one_error(probelint("--no-cache", IMAGE, ko), str(ko))  # alone too: not an empty probe file passing


def test_walk_does_not_follow_links_out_of_the_tree(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0:SECRET-LINE:/root:/bin/bash\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(PROBES, tree / "good.kprobes")
    (tree / "evil.kprobes").symlink_to(secret)
    proc = probelint("--no-cache", "--format", "github", IMAGE, tree)
    assert "SECRET-LINE" not in proc.stdout + proc.stderr
    assert f"probelint: warning: {tree / 'evil.kprobes'}: a symbolic link out of {tree}" in proc.stderr
    assert proc.returncode in (0, 1) and "good.kprobes" in proc.stdout


def test_walk_follows_a_link_to_a_file_inside_the_tree(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.kprobes").write_text("demo_read+0x5\n")
    (tmp_path / "b.kprobes").symlink_to(tmp_path / "sub" / "a.kprobes")
    (tmp_path / "c.kprobes").write_text("demo_read+0x5\n")
    proc = probelint("--no-cache", IMAGE, tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "2 probes" in proc.stdout  # c, and a once (b is a itself)


def test_walk_refuses_a_fifo_with_a_probe_name(tmp_path: Path) -> None:
    (tmp_path / "a.kprobes").write_text("demo_read\n")
    os.mkfifo(tmp_path / "b.bt")
    one_error(probelint("--no-cache", IMAGE, tmp_path, timeout=20), "b.bt: a FIFO")


def test_walk_reports_a_directory_it_cannot_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # in-process: the suite may run as root, whom a 000 directory does not stop
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "x.kprobes").write_text("demo_read\n")
    real = os.scandir

    def scandir(path: str | Path) -> object:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError, match="locked: cannot list the directory: Permission denied"):
        read_texts([tmp_path])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a 000 directory")
def test_walk_reports_a_directory_it_cannot_list_for_real(tmp_path: Path) -> None:
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "x.kprobes").write_text("demo_read\n")
    (tmp_path / "locked").chmod(0)
    try:
        one_error(probelint("--no-cache", IMAGE, tmp_path), "locked: cannot list")
    finally:
        (tmp_path / "locked").chmod(0o755)


def _deep(root: Path) -> None:
    """A tree deeper than PATH_MAX (4096), built through directory descriptors."""
    fd = os.open(root, os.O_RDONLY)
    for _ in range(25):
        os.mkdir("d" * 200, dir_fd=fd)
        child = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    out = os.open("x.kprobes", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(out, b"demo_read\n")
    os.close(out)
    os.close(fd)


def test_walk_of_a_tree_deeper_than_path_max(tmp_path: Path) -> None:
    _deep(tmp_path)
    one_error(probelint("--no-cache", IMAGE, tmp_path), "File name too long")


def test_utf8_bom_is_not_part_of_line_one(tmp_path: Path) -> None:
    probes = tmp_path / "bom.kprobes"
    probes.write_bytes(b"\xef\xbb\xbfdemo_read+0x5\n")
    proc = probelint("--no-cache", IMAGE, probes)
    assert proc.returncode == 0 and "KP001" not in proc.stdout, proc.stdout
    script = tmp_path / "bom"
    script.write_bytes(b"\xef\xbb\xbf#!/usr/bin/env python3\nprint()\n")
    one_error(probelint("--no-cache", IMAGE, script), "a Python program")


def test_map_output_does_not_write_through_a_planted_temporary_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    out = tmp_path / "out.gz"
    (tmp_path / "out.gz.tmp").symlink_to(victim)
    proc = probelint("map", "--no-cache", IMAGE, "-o", out, "-j", "1")
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "keep\n" and out.is_file() and not out.is_symlink()


@pytest.mark.parametrize("option", ["-o", "--html", "--svg"])
def test_map_outputs_replace_a_link_at_the_target(tmp_path: Path, option: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    out = tmp_path / "out"
    out.symlink_to(victim)
    proc = probelint("map", "--no-cache", IMAGE, "--function", "demo_read", option, out, "-j", "1")
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "keep\n" and out.is_file() and not out.is_symlink()
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".probelint-")] == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_map_query_of_a_fifo_is_refused(fifo: Path) -> None:
    one_error(probelint("map", "--query", "demo_read+5", fifo, timeout=20), "a FIFO")


def test_a_directory_swapped_for_a_link_after_the_walk_is_not_read_through(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk met tree/sub as a directory; before the read it becomes a link out of the tree
    (a race an attacker who can write the tree can win): the open file is checked, not the name."""
    import probelint.readers as readers

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.kprobes").write_text("root:x:0:0:SECRET-LINE:/root:/bin/bash\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "x.kprobes").write_text("demo_read\n")
    walk = readers.tree_files

    def walk_then_swap(root: Path) -> list[Path]:
        found = walk(root)
        shutil.rmtree(tree / "sub")
        (tree / "sub").symlink_to(outside)
        return found

    monkeypatch.setattr(readers, "tree_files", walk_then_swap)
    with pytest.raises(InputError, match=r"now leads out of .*a link swapped in since the walk") as caught:
        read_texts([tree])
    assert "SECRET" not in str(caught.value)
