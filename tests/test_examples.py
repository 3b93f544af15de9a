"""The CI examples are checked by the tools that would reject them."""

import shutil
import subprocess

import pytest

from tests.conftest import ROOT

CI = ROOT / "examples" / "ci"


@pytest.mark.parametrize(("schema", "path"), [("vendor.github-workflows", CI / "github-workflow.yml"),
                                               ("vendor.gitlab-ci", CI / "gitlab-ci.yml")])
def test_ci_examples_match_their_schemas(schema, path):
    if shutil.which("check-jsonschema") is None:
        pytest.skip("check-jsonschema is not installed")
    proc = subprocess.run(["check-jsonschema", "--builtin-schema", schema, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pre_commit_files_are_valid():
    if shutil.which("pre-commit") is None:
        pytest.skip("pre-commit is not installed")
    for cmd in (["validate-manifest", str(ROOT / ".pre-commit-hooks.yaml")],
                ["validate-config", str(CI / "pre-commit-config.yaml")]):
        proc = subprocess.run(["pre-commit", *cmd], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
