"""The real pre-commit, in a throwaway git repository, running this checkout's hook."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import DEMO, ROOT

pytestmark = pytest.mark.slow


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_hook_fails_on_a_bad_probe_and_passes_once_fixed(tmp_path):
    if shutil.which("pre-commit") is None:
        pytest.skip("pre-commit is not installed (pip install pre-commit)")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    repo = tmp_path / "probes"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "t")
    shutil.copy(DEMO / "demo.elf", tmp_path / "demo.elf")
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {ROOT}\n  rev: {head.stdout.strip()}\n  hooks:\n  - id: probelint\n"
        f"    args: [--kernel, {tmp_path / 'demo.elf'}]\n")
    probes = repo / "probes.txt"
    probes.write_text("demo_read+0x7\n")
    git(repo, "add", ".")
    env_home = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    bad = subprocess.run(["pre-commit", "run", "--all-files"], cwd=repo, capture_output=True, text=True,
                         env=env_home, timeout=1200)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "KP104" in bad.stdout
    probes.write_text("demo_read+0x6\n")
    good = subprocess.run(["pre-commit", "run", "--all-files"], cwd=repo, capture_output=True, text=True,
                          env=env_home, timeout=600)
    assert good.returncode == 0, good.stdout + good.stderr
