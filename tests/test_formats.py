"""CI output formats: SARIF validated against the official 2.1.0 schema, GitHub annotations, GitLab."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile

import jsonschema
import pytest

from probelint.image.cache import default_cache_dir
from tests.conftest import DEMO, ROOT

SCHEMA_PACKAGE = "@microsoft/jest-sarif@1.0.0-beta.0"  # ships sarif-2.1.0-rtm.5.json


def run(fmt: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "probelint", "--format", fmt, str(DEMO / "demo.elf"),
                           str(DEMO / "probes.txt")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    return proc.stdout


@pytest.fixture(scope="session")
def sarif_schema() -> dict:
    """The SARIF 2.1.0 JSON schema, from an npm package (fetched once into the cache)."""
    cache = default_cache_dir() / "schemas"
    path = cache / "sarif-2.1.0-rtm.5.json"
    if not path.is_file():
        if shutil.which("npm") is None:
            pytest.skip("npm is needed to fetch the SARIF schema")
        cache.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["npm", "pack", "--silent", SCHEMA_PACKAGE], cwd=cache, capture_output=True,
                              text=True, timeout=120)
        if proc.returncode != 0:
            pytest.skip(f"npm pack {SCHEMA_PACKAGE} failed: {proc.stderr.strip()[-200:]}")
        tgz = cache / proc.stdout.strip().splitlines()[-1]
        with tarfile.open(tgz) as tar:
            member = tar.extractfile("package/lib/schemas/sarif-2.1.0-rtm.5.json")
            assert member is not None
            path.write_bytes(member.read())
    return json.loads(path.read_text())


def test_sarif_is_valid(sarif_schema):
    log = json.loads(run("sarif"))
    jsonschema.Draft7Validator(sarif_schema).validate(log)
    run0 = log["runs"][0]
    rule_ids = [r["id"] for r in run0["tool"]["driver"]["rules"]]
    assert "KP104" in rule_ids and all(r["helpUri"].endswith(f"{r['id']}.md") for r in run0["tool"]["driver"]["rules"])
    assert run0["properties"]["cpuProfile"] == "qemu64" and run0["properties"]["kernelImages"][0]["buildId"]
    kp104 = next(r for r in run0["results"] if r["ruleId"] == "KP104")
    assert kp104["locations"][0]["physicalLocation"]["region"] == {"startLine": 4, "startColumn": 1}
    assert rule_ids[kp104["ruleIndex"]] == "KP104" and kp104["partialFingerprints"]["probelint/v1"]


def test_github_annotations_are_escaped():
    lines = run("github").splitlines()
    kp104 = next(line for line in lines if "KP104" in line)
    assert kp104.startswith("::error file=") and ",line=4,col=1,title=probelint KP104::" in kp104
    assert "\n" not in kp104 and "%0A" in kp104 and "%25rbp" in kp104  # newlines and % escaped
    assert any(line.startswith("::notice ") for line in lines)
    assert lines[0] == "::notice title=probelint::verdicts assume cpu profile qemu64 (--cpu-profile)"


def test_gitlab_code_quality():
    issues = json.loads(run("gitlab"))
    assert {"description", "check_name", "fingerprint", "severity", "location"} <= set(issues[0])
    assert len({i["fingerprint"] for i in issues}) == len(issues)
    assert {i["severity"] for i in issues} <= {"info", "minor", "major", "critical", "blocker"}
    assert {i["cpu_profile"] for i in issues} == {"qemu64"}


def test_json_probe_lines_encode_as_json_dumps():
    """report/json.py encodes each probe with one prebuilt C encoder; its lines must be what
    ``json.dumps`` writes, escapes, non-ASCII and 64-bit values included, and a value JSON
    cannot hold must fail as ``dumps`` fails."""
    from probelint.report.json import _one_line_encoder

    encode = _one_line_encoder()
    values = [{"spec": 'a"b\\c\n\x1b[31m', "notes": ["é", "\u2028", "\ud800"], "offset": 2**64 - 1, "n": None,
               "ok": True, "no": False, "nested": [{"x": []}, {}], "f": 1.5}, [], "plain", 0]
    for value in values:
        assert encode(value) == json.dumps(value)
    with pytest.raises(TypeError):
        encode({"bad": object()})
