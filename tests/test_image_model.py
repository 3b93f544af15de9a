"""The kernel image model: the CPU profile and .config are given when the kernel is loaded, and the
image and arch packages import one another without cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import probelint
from probelint.arch.x86.cpu import DEFAULT_PROFILE, CpuProfile
from probelint.errors import InputError

DEMO = Path(__file__).parent.parent / "examples" / "demo" / "demo.elf"
PACKAGE = Path(probelint.__file__).parent


def _imports(path: Path, name: str) -> set[str]:
    """Every probelint module `name` imports: top-level, function-level and `if TYPE_CHECKING:`."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("probelint.") and m != name}


def test_image_and_arch_modules_import_without_cycles():
    modules = {}
    for sub in ("image", "arch"):
        for path in PACKAGE.joinpath(sub).rglob("*.py"):
            name = ".".join(("probelint", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
            modules[name] = path
    graph = {name: _imports(path, name) & modules.keys() for name, path in modules.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            here = todo.pop()
            if here == goal:
                return True
            if here not in seen:
                seen.add(here)
                todo.extend(graph[here])
        return False

    cycles = sorted((a, b) for a, targets in graph.items() for b in targets if reaches(b, a))
    assert cycles == []


def test_profile_and_dotconfig_are_fixed_when_the_kernel_is_loaded(tmp_path):
    default = probelint.load_kernel([DEMO])
    assert default.profile is DEFAULT_PROFILE and all(i.profile is DEFAULT_PROFILE for i in default.images)
    assert not hasattr(default, "set_profile")
    with pytest.raises(AttributeError):
        default.vmlinux.profile = CpuProfile.EPYC_ROME  # type: ignore[misc]
    dotconfig = tmp_path / "config"
    dotconfig.write_text("# CONFIG_OPTPROBES is not set\n")
    rome = probelint.load_kernel([DEMO], profile="rethunk", dotconfig=dotconfig)
    assert rome.vmlinux.profile is CpuProfile.EPYC_ROME and rome.enabled("OPTPROBES") is False
    assert default.vmlinux.config is default.vmlinux.inferred_config  # untouched by the other load
    again = rome.with_profile(CpuProfile.QEMU64)
    assert again.vmlinux.profile is CpuProfile.QEMU64 and again.enabled("OPTPROBES") is False


def test_unreadable_dotconfig_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        probelint.load_kernel([DEMO], dotconfig=tmp_path / "missing")
