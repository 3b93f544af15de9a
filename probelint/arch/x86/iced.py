"""iced-x86's decoder and formatter, loaded without the package's ``__init__``.

``import iced_x86`` executes all 40 of its generated constant modules (``Code`` alone defines
~4,900 names): ~8 ms, a twentieth of a warm run that decodes a few instructions. What the
decoder needs is the native extension plus six constants, read from iced's own small generated
files or from what it decodes (never copied: the numbering changes between iced releases). The extension is registered
under its package name, so a later ``import iced_x86`` (the vmtest sampler) reuses it and its
classes are the same objects. Anything unexpected in the package's layout falls back to the
plain import.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["CONDITIONAL_BRANCH", "GAS", "INVALID_CODE", "NO_INVALID_CHECK", "UD0", "UNCONDITIONAL_BRANCH",
           "Decoder", "Formatter", "Instruction"]

_PACKAGE = "iced_x86"
_NATIVE = "_iced_x86_py"
_CONSTANT_MODULES = ("DecoderOptions", "FormatterSyntax", "FlowControl")


def _load(name: str, loader: importlib.machinery.ExtensionFileLoader | importlib.machinery.SourceFileLoader,
          register: bool) -> ModuleType:
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    if register:
        sys.modules[name] = module
    return module


def _without_init() -> tuple[ModuleType, dict[str, ModuleType]]:
    """The native module and the small constant modules, by direct file loads."""
    spec = importlib.machinery.PathFinder.find_spec(_PACKAGE)  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(_PACKAGE)
    where = Path(next(iter(spec.submodule_search_locations)))
    qualified = f"{_PACKAGE}.{_NATIVE}"
    native = sys.modules.get(qualified)
    if native is None:
        found = [where / (_NATIVE + s) for s in importlib.machinery.EXTENSION_SUFFIXES
                 if (where / (_NATIVE + s)).is_file()]
        if not found:
            raise ImportError(qualified)
        native = _load(qualified, importlib.machinery.ExtensionFileLoader(qualified, str(found[0])), True)
    # each of these defines only ints; not registered, so the package's own import stays complete
    constants = {name: _load(f"{_PACKAGE}.{name}", importlib.machinery.SourceFileLoader(
        f"{_PACKAGE}.{name}", str(where / f"{name}.py")), False)
        for name in _CONSTANT_MODULES}
    return native, constants


def _modules() -> tuple[ModuleType, dict[str, ModuleType]]:
    package = sys.modules.get(_PACKAGE)  # already imported in full (tests, the sampler): nothing to save
    if package is None:
        try:
            return _without_init()
        except (ImportError, OSError, SyntaxError, AssertionError):
            import iced_x86 as package
    return package, {name: getattr(package, name) for name in _CONSTANT_MODULES}


_native, _constants = _modules()
Decoder = _native.Decoder
Formatter = _native.Formatter
Instruction = _native.Instruction
INVALID_CODE: int = Instruction().code  # a default instruction is Code.INVALID (0 in every release)
NO_INVALID_CHECK: int = _constants["DecoderOptions"].NO_INVALID_CHECK
GAS: int = _constants["FormatterSyntax"].GAS
UNCONDITIONAL_BRANCH: int = _constants["FlowControl"].UNCONDITIONAL_BRANCH
CONDITIONAL_BRANCH: int = _constants["FlowControl"].CONDITIONAL_BRANCH
# the mnemonic of 0f ff /r, decoded: Mnemonic.py holds 1,800 names (0.6 ms) for this one
UD0: int = Decoder(64, b"\x0f\xff\xc0", options=NO_INVALID_CHECK).decode().mnemonic
