"""A pytest plugin (``-p tests.firing``) that records which rules fire in which test: every result
the engine returns carries the rules that fired on it (`ProbeResult.fired`, reported or not).
Written as JSON ({rule: [test ids]}) to $PROBELINT_FIRED_OUT when the session ends."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator
from typing import Any

import pytest

from probelint import engine

_fired: dict[str, set[str]] = {}
_current = ["<collection>"]


def _recording(check: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = check(*args, **kwargs)
        for result in out if isinstance(out, list) else [out]:
            for rule in result.fired:
                _fired.setdefault(rule, set()).add(_current[0])
        return out

    return wrapper


engine.check_probes = _recording(engine.check_probes)
engine.check_alone = _recording(engine.check_alone)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    _current[0] = item.nodeid
    yield


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = os.environ.get("PROBELINT_FIRED_OUT")
    if out:
        with open(out, "w") as fh:
            json.dump({rule: sorted(tests) for rule, tests in _fired.items()}, fh, indent=1)
