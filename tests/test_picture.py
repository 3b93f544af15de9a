"""probelint map --html/--svg: the picture of a function, checked in a real browser.

The page is rendered by the CLI, loaded by headless Chromium (``--dump-dom`` after its script has
run, ``--screenshot`` into .ci/artifacts/ for people to look at), and its DOM is checked against
the engine: every instruction once, in the class `probemap.classify_function` gives it, every
probe window exactly the engine's, every branch that keeps a probe an int3 probe drawn.
Without Chromium the same checks run on the page as written, and the browser tests skip.
"""

from __future__ import annotations

import itertools
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import probelint
from probelint.explain import blocking_branches
from probelint.image.kernel import Kernel
from probelint.picture import KINDS
from probelint.probemap import classify_function
from tests.conftest import DEMO, ROOT

ARTIFACTS = ROOT / ".ci" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# probes beside examples/demo/probes.txt: an optimizable probe with another in its window (KP301)
# and one blocked by a branch into its first bytes (KP206)
DEMO_EXTRA = "demo_read+0x13\ndemo_read+0x17\ndemo_read+0x1a\n"
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                   "(.ci/run installs it: apt-get install --no-install-recommends chromium)")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probelint", "map", *args], capture_output=True, text=True,
                          cwd=ROOT)


class _Elements(HTMLParser):
    """(tag, attributes) of every element, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))


def elements(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.found


def having(found: list[tuple[str, dict[str, str]]], tag: str, cls: str) -> list[dict[str, str]]:
    return [a for t, a in found if t == tag and cls in a.get("class", "").split()]


def check_page(found: list[tuple[str, dict[str, str]]], kernel: Kernel, function: str, probes: list[str]) -> None:
    """The DOM says what the engine says."""
    sym = kernel.vmlinux.symbols.lookup_name(function)
    expected = {f"{offset:#x}": KINDS[cls] for offset, cls, _ in classify_function(kernel, sym)["b"]}
    assert len(expected) == len(kernel.vmlinux.function(sym).insns)
    for tag, cls in (("g", "insn"), ("tr", "insn-row")):
        drawn = having(found, tag, cls)
        offsets = [a.get("data-offset", "") for a in drawn]
        assert sorted(offsets) == sorted(expected), f"{tag}.{cls}: every instruction exactly once"
        for a in drawn:
            kinds = set(a["class"].split()) & set(KINDS.values())
            assert kinds == {expected[a.get("data-offset", "")]}, (tag, a)

    # the probes of the files that land in the function, numbered in input order, as one set
    results = [r for r in probelint.check(kernel, probes)
               if r.context is not None and r.context.symbol is not None and r.context.symbol.address == sym.address]
    pins = having(found, "g", "pin")
    assert [int(a["data-probe"]) for a in pins] == list(range(1, len(results) + 1))
    windows = [a for a in having(found, "rect", "window") if "data-probe" in a]  # not the legend's
    arcs = [a for a in having(found, "path", "blocker") if "data-probe" in a]
    fn = kernel.vmlinux.function(sym)
    for number, (pin, result) in enumerate(zip(pins, results, strict=True), 1):
        ctx, v = result.context, result.verdict
        assert pin["data-offset"] == f"{ctx.offset:#x}"
        kind = "refused" if not v.registers else "ftrace" if v.ftrace else "optimized" if v.optimized else "int3"
        assert kind in pin["class"].split()
        mine = [w for w in windows if w["data-probe"] == str(number)]
        if v.registers and not v.ftrace and fn.is_boundary(ctx.address):
            window = ctx.window()
            bounds = {(f"{ctx.offset:#x}", f"{window[-1].end - sym.address:#x}")}
            assert mine and {(w["data-start"], w["data-end"]) for w in mine} == bounds, result.spec.text
            assert ("unoptimized" in mine[0]["class"].split()) == (not v.optimized)
        else:
            assert not mine, result.spec.text
        drawn = {(a["data-source"], a["data-target"]) for a in arcs if a["data-probe"] == str(number)}
        blocking = {(f"{i.address - sym.address:#x}", f"{t - sym.address:#x}")
                    for t, i in blocking_branches(fn, ctx.address)} if mine else set()
        assert drawn == blocking, result.spec.text
        if "KP206" in v.reasons:
            assert drawn, f"{result.spec.text} is kept an int3 probe by a branch: its arc is missing"


def browser(page: Path, tmp_path: Path, *args: str) -> str:
    """Run headless Chromium on the page; its stdout (the DOM with --dump-dom)."""
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args, page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(page: Path, tmp_path: Path, name: str, size: tuple[int, int]) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = ARTIFACTS / name
    png.unlink(missing_ok=True)
    browser(page, tmp_path, f"--screenshot={png}", f"--window-size={size[0]},{size[1]}")
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == size
    assert png.stat().st_size > 20_000, "an almost empty screenshot"
    return png


def render(image: Path, function: str, tmp_path: Path, probe_files: list[Path]) -> Path:
    page = tmp_path / f"{function}.html"
    proc = run(str(image), "--function", function, "--html", str(page), "--svg", str(tmp_path / f"{function}.svg"),
               *map(str, probe_files))
    assert proc.returncode == 0, proc.stderr
    assert f"picture of {function} written to {page}" in proc.stderr
    return page


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    tmp = tmp_path_factory.mktemp("picture")
    extra = tmp / "extra.txt"
    extra.write_text(DEMO_EXTRA)
    probes = (DEMO / "probes.txt").read_text().splitlines() + DEMO_EXTRA.splitlines()
    return render(DEMO / "demo.elf", "demo_read", tmp, [DEMO / "probes.txt", extra]), probes


def test_demo_page_as_written(demo_page: tuple[Path, list[str]]) -> None:
    page, probes = demo_page
    html = page.read_text()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html  # no network
    kernel = probelint.load_kernel([DEMO / "demo.elf"])
    check_page(elements(html), kernel, "demo_read", probes)
    svg = page.with_suffix(".svg").read_text()
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert len(having(elements(svg), "g", "insn")) == len(kernel.vmlinux.function(
        kernel.vmlinux.symbols.lookup_name("demo_read")).insns)


@needs_browser
def test_demo_page_in_chromium(demo_page: tuple[Path, list[str]], tmp_path: Path) -> None:
    page, probes = demo_page
    dom = browser(page, tmp_path, "--dump-dom")
    found = elements(dom)
    assert any(t == "body" and a.get("data-ready") == "1" for t, a in found), "the page's script did not run"
    check_page(found, probelint.load_kernel([DEMO / "demo.elf"]), "demo_read", probes)
    screenshot(page, tmp_path, "picture-demo_read.png", (1600, 900))


def test_errors(tmp_path: Path) -> None:
    demo = str(DEMO / "demo.elf")
    cases = [
        ((demo, "--html", str(tmp_path / "a.html")), "--function"),
        ((demo, "--function", "demo_read", "--function", "demo_write", "--svg", str(tmp_path / "a.svg")),
         "--function"),
        ((demo, "--function", "no_such_function", "--html", str(tmp_path / "a.html")), "no_such_function"),
        ((demo, "--function", "demo_counter", "--html", str(tmp_path / "a.html")), "not a function"),  # data
        ((demo, "--function", "demo_counter", "-o", str(tmp_path / "m.gz")), "not a function"),
        ((demo, "--function", "demo_read", str(DEMO / "probes.txt")), "--html"),
        ((demo, "--function", "demo_read", "--html", str(tmp_path / "a.html"), str(tmp_path / "missing.txt")),
         "missing.txt"),
        ((demo, "--function", "demo_read", "--html", str(tmp_path / "no" / "dir" / "a.html")), "cannot write"),
    ]
    for args, words in cases:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("probelint: error: "), proc.stderr
        assert words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "a.html").exists()


@pytest.mark.kernel
def test_debian_function_in_chromium(debian, debian_kernel: Kernel, tmp_path: Path) -> None:
    """vfs_read of the Debian 6.1 kernel, with probes chosen from its own map: one kept an int3
    probe by a branch, an optimizable one with a second probe inside its window, a refused one."""
    sym = debian_kernel.vmlinux.symbols.lookup_name("vfs_read")
    boundaries = classify_function(debian_kernel, sym)["b"]
    blocked = next(o for o, _, rule in boundaries if rule == "KP206")
    optimized = [o for o, cls, _ in boundaries if cls == "O"]
    outer, inner = next((a, b) for a, b in itertools.pairwise(optimized) if b - a < 5)
    refused = next(o for o, cls, _ in boundaries if cls == "R")
    probes = [f"vfs_read+{o:#x}" for o in (blocked, outer, inner, refused)] + ["vfs_write", "vfs_read+0x1"]
    probe_file = tmp_path / "probes.txt"
    probe_file.write_text("\n".join(probes) + "\n")
    page = render(debian.vmlinux, "vfs_read", tmp_path, [probe_file])
    check_page(elements(page.read_text()), debian_kernel, "vfs_read", probes)
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs it: apt-get install --no-install-recommends chromium)")
    check_page(elements(browser(page, tmp_path, "--dump-dom")), debian_kernel, "vfs_read", probes)
    screenshot(page, tmp_path, "picture-vfs_read.png", (1800, 1100))


def test_the_checks_can_fail(demo_page: tuple[Path, list[str]]) -> None:
    """A page with one instruction in the wrong class, one missing, or a window off by a byte fails."""
    page, probes = demo_page
    html = page.read_text()
    kernel = probelint.load_kernel([DEMO / "demo.elf"])
    wrong_class = html.replace('class="insn optimized"', 'class="insn int3"', 1)
    missing = html.replace('<g class="insn ftrace" data-offset="0x0">', '<g class="insn ftrace">', 1)
    start = html.index('data-end="0x13"')
    short_window = html[:start] + 'data-end="0x12"' + html[start + len('data-end="0x13"'):]
    for broken in (wrong_class, missing, short_window):
        assert broken != html
        with pytest.raises(AssertionError):
            check_page(elements(broken), kernel, "demo_read", probes)
