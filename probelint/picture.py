"""``probelint map IMAGE --function F --html OUT.html [PROBES...]``: a picture of one function.

The function's bytes in rows of a fixed byte width, one rectangle per instruction coloured by what
a probe there gets (the classes of `probemap.boundary_class`, so the picture says what ``map``
says), with the rule's own message on hover; the probes of the input files that land in the
function, with the jump window the engine computed (`ProbeContext.window`) and the branches that
keep them int3 probes (`explain.blocking_branches`); and the disassembly, row for row linked to
the rectangles. One self-contained file: inline SVG and CSS, a few lines of JS for hovering.

Every instruction is one ``<g class="insn KIND" data-offset="0x..">`` in the SVG and one
``<tr class="insn-row KIND" data-offset="0x..">`` in the table (KIND: optimized, int3, ftrace,
refused); windows are ``.window[data-probe][data-start][data-end]``, arcs ``.arc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from probelint.disasm import insn_text
from probelint.explain import blocking_branches, state
from probelint.fileio import replacing
from probelint.ruledocs import rule_summary

if TYPE_CHECKING:
    from probelint.arch.x86.decode import Insn
    from probelint.checks import ProbeResult
    from probelint.image.kallsyms import KSym
    from probelint.image.kernel import Image, Kernel

__all__ = ["Picture", "build", "render_html", "render_svg", "write"]

KINDS = {"O": "optimized", "I": "int3", "F": "ftrace", "R": "refused", "U": "unknown", "N": "unchecked"}
LABELS = {"optimized": "jump-optimized", "int3": "int3 only", "ftrace": "ftrace-based", "refused": "refused",
          "unknown": "optimization not checked", "unchecked": "not checked"}
_SHOWN_IF_ANY = ("unknown", "unchecked")  # a module without its vmlinux (KP412): in the legend only then
# (fill, stroke): Okabe-Ito hues, told apart by people with red-green colour blindness; refused
# is also hatched, so it survives greyscale printing
COLOURS = {"optimized": ("#8fd3b6", "#00805c"), "int3": ("#f6c86b", "#b07800"),
           "ftrace": ("#a9d5f3", "#2a7fb8"), "refused": ("#f0a27a", "#b34700"),
           "unknown": ("#e4e4e4", "#8a8a8a"), "unchecked": ("#f4f4f4", "#b5b5b5")}

# Layout (SVG user units = CSS px). Rows have a fixed byte width so a column is the same offset
# modulo the row width in every row; an instruction crossing a row end continues on the next row.
LEFT, RIGHT, TOP_BAND, BOX, BOTTOM_BAND = 78, 24, 26, 28, 14
PITCH = TOP_BAND + BOX + BOTTOM_BAND
HEAD = 118  # title, legend, column ruler
LEGEND_WIDTH = 900
ALL_ARCS_SHOWN = 16  # up to this many branches every branch arc is drawn by default; more would clutter


@dataclass(frozen=True, slots=True)
class Cell:
    """One instruction of the function and what a probe on it gets."""

    offset: int
    insn: Insn
    text: str
    kind: str  # a value of KINDS
    rule: str  # the first reason ("" when optimized or ftrace-based)
    errno: str
    message: str  # the rule's message for a probe exactly here

    @property
    def title(self) -> str:
        head = f"+{self.offset:#x}  {self.text}\n{LABELS[self.kind]}"
        if self.rule:
            head += f" [{self.rule}{' ' + self.errno if self.errno else ''}]"
        return head + (f"\n{self.message}" if self.message else "")


@dataclass(frozen=True, slots=True)
class Marked:
    """A probe of the input files that lands in the function, as checked in its set."""

    number: int
    result: ProbeResult
    offset: int
    kind: str
    window: tuple[int, int] | None  # [start, end) offsets of the engine's jump window
    blockers: tuple[tuple[int, int], ...]  # (branch offset, target offset) into P+1..P+5
    # branches of the function's .cold/.part pieces into P+1..P+5: can_optimize does not see them (KP405)
    piece_blockers: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Picture:
    image: Image
    sym: KSym
    cells: tuple[Cell, ...]
    probes: tuple[Marked, ...]
    branches: tuple[tuple[int, int], ...]  # (source, target) offsets of every branch within the function
    elsewhere: int  # probes of the input files that land in other functions (or nowhere)
    # (source as PIECE+0xOFF, target offset) of the branches of .cold/.part pieces into the function
    piece_branches: tuple[tuple[str, int], ...] = ()


def build(kernel: Kernel, sym: KSym, results: list[ProbeResult], image: Image | None = None) -> Picture:
    """Classify every boundary of `sym` (a function of `image`: default the vmlinux) and place the
    probes of `results` (checked as one set)."""
    from probelint.probemap import boundary_class, check_boundaries

    image = image or kernel.vmlinux
    assert image is not None
    fn = image.function(sym)
    pieces = tuple((image.describe(insn.address).split(":", 1)[-1], target - sym.address)
                   for piece in image.symbols.pieces_of(sym.name.split(".", 1)[0]) if piece.address != sym.address
                   for target, insn in image.function(piece).branches if sym.address <= target < sym.end)
    by_address = {i.address: i for i in fn.insns}
    cells = []
    for offset, alone in check_boundaries(kernel, sym, findings=True, image=image):
        cls, reason = boundary_class(alone.verdict)
        rule, _, errno = reason.partition(":")
        kind = KINDS[cls]
        insn = by_address[sym.address + offset]
        message = ""
        if rule or kind == "ftrace":
            wanted = rule or "KP201"
            message = next((f.message for f in alone.findings if f.rule == wanted), "") or rule_summary(wanted)
        cells.append(Cell(offset, insn, insn_text(image, insn), kind, rule, errno, message))
    marked = []
    for result in results:
        ctx = result.context
        if ctx is None or ctx.image is not image or ctx.symbol is None or ctx.symbol.address != sym.address:
            continue
        v = result.verdict
        kind = KINDS[boundary_class(v)[0]]
        window = None
        blockers: tuple[tuple[int, int], ...] = ()
        if v.registers and not v.ftrace and fn.is_boundary(ctx.address):  # the engine's own window
            insns = ctx.window()
            window = (ctx.offset, insns[-1].end - sym.address) if insns else None
            blockers = tuple((i.address - sym.address, t - sym.address) for t, i in blocking_branches(fn, ctx.address))
        # KP405: a piece's branch into P+1..P+5 of a probe the kernel optimizes anyway
        into = tuple((src, t) for src, t in pieces if ctx.offset < t < ctx.offset + 5) if v.optimized else ()
        marked.append(Marked(len(marked) + 1, result, ctx.offset, kind, window, blockers, into))
    branches = tuple(sorted((i.address - sym.address, t - sym.address) for t, i in fn.branches
                            if sym.address <= t < sym.end))
    return Picture(image, sym, tuple(cells), tuple(marked), branches, len(results) - len(marked), tuple(sorted(pieces)))


# ---------------------------------------------------------------------------------------------- SVG

class _Grid:
    """Byte offset -> position: `per_row` bytes a row, `px` pixels a byte."""

    def __init__(self, size: int) -> None:
        # up to ~4 KiB: 64 bytes a row at 16 px a byte, a function shorter than a row at 24 px in
        # rows of whole 16-byte columns; larger functions at 8 px and twice the bytes a row
        if size <= 32:
            self.per_row, self.px = max(16, -(-size // 16) * 16), 24
        else:
            self.per_row, self.px = (64, 16) if size <= 4096 else (128, 8)
        self.rows = max(1, -(-size // self.per_row))
        self.width = max(LEFT + self.per_row * self.px + RIGHT, LEGEND_WIDTH)
        self.height = HEAD + self.rows * PITCH + 8

    def x(self, offset: int) -> float:
        return LEFT + (offset % self.per_row) * self.px

    def top(self, offset: int) -> float:
        """Top of the instruction boxes in the row holding `offset`."""
        return HEAD + (offset // self.per_row) * PITCH + TOP_BAND

    def spans(self, start: int, end: int) -> list[tuple[int, int]]:
        """[start, end) cut at row ends."""
        out = []
        while start < end:
            stop = min(end, (start // self.per_row + 1) * self.per_row)
            out.append((start, stop))
            start = stop
        return out


def _style() -> str:
    rules = []
    for kind, (fill, stroke) in COLOURS.items():
        rules.append(f".insn.{kind} rect, .swatch.{kind} {{ fill: {fill}; stroke: {stroke}; }}")
    rules.append(".insn.refused rect, .swatch.refused { fill: url(#hatch); }")
    return "\n".join(rules) + """
svg.picture { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 11px; }
svg.picture text { fill: #222; }
.insn rect { stroke-width: 1; }
.insn text { font-size: 10px; pointer-events: none; fill: #1a1a1a; }
.insn.hl rect, .insn:hover rect { stroke: #000; stroke-width: 2.5; }
.ruler, .rowlabel { fill: #777 !important; font-size: 10px; }
.ruler-line { stroke: #ddd; }
.target { fill: #444; }
.window { fill: none; stroke: #111; stroke-width: 2.2; }
.window.unoptimized { stroke-dasharray: 5 3; }
.window-label { font-size: 9px; font-weight: bold; }
.pin circle { stroke: #111; stroke-width: 1.2; }
.pin text { font-size: 10px; font-weight: bold; text-anchor: middle; }
.pin line { stroke: #111; stroke-width: 1.2; }
.arc { fill: none; }
.arc.blocker { stroke: #c0182b; stroke-width: 1.8; }
.arc.all { stroke: #7a7a7a; stroke-width: 1; opacity: 0.45; display: none; }
.arc.piece { stroke: #7a4fb0; stroke-width: 1.2; stroke-dasharray: 4 2; }
.arc.blocker.piece { stroke: #c0182b; stroke-width: 1.8; }
svg.all-arcs .arc.all { display: inline; }
.legend text { font-size: 11px; }
.title { font-size: 14px; font-weight: bold; }
"""


def _kind_counts(p: Picture) -> dict[str, int]:
    """Cells per kind, in legend order (the KP412 kinds only where there are some)."""
    counts = {k: sum(c.kind == k for c in p.cells) for k in LABELS}
    return {k: n for k, n in counts.items() if n or k not in _SHOWN_IF_ANY}


def _legend(p: Picture) -> list[str]:
    counts = _kind_counts(p)
    out = ['<g class="legend">']
    x = LEFT
    for kind in counts:
        label = LABELS[kind]
        text = f"{label} ({counts[kind]})"
        out.append(f'<rect class="swatch {kind}" x="{x}" y="34" width="16" height="12"/>')
        out.append(f'<text x="{x + 21}" y="44">{escape(text)}</text>')
        x += 30 + 7 * len(text)
    y = 64
    out.append(f'<rect class="window" x="{LEFT}" y="{y - 10}" width="22" height="13"/>'
               f'<text x="{LEFT + 28}" y="{y}">jump window of a probe (dashed: not optimized)</text>')
    x = LEFT + 360
    out.append(f'<path class="arc blocker" d="M{x},{y} Q{x + 12},{y - 12} {x + 24},{y}" marker-end="url(#arrow)"/>'
               f'<text x="{x + 30}" y="{y}">branch into P+1..P+5: keeps P an int3 probe</text>')
    x += 340
    out.append(f'<path class="target" d="M{x},{y - 8} l8,0 l-4,6 z"/><text x="{x + 13}" y="{y}">branch target</text>')
    out.append("</g>")
    return out


def render_svg(p: Picture, *, standalone: bool = True) -> str:
    """The picture alone; `standalone` adds the XML namespace and keeps it a file of its own."""
    grid = _Grid(p.sym.size)
    show_all = " all-arcs" if len(p.branches) <= ALL_ARCS_SHOWN else ""
    # embedded, it shrinks with its pane (never grows past its natural size)
    ns = ' xmlns="http://www.w3.org/2000/svg"' if standalone else f' style="max-width:{grid.width}px"'
    out = [f'<svg{ns} class="picture{show_all}" width="{grid.width}" height="{grid.height}" '
           f'viewBox="0 0 {grid.width} {grid.height}">',
           f"<style>{_style()}</style>",
           '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
           f'<rect width="6" height="6" fill="{COLOURS["refused"][0]}"/>'
           f'<line x1="0" y1="0" x2="0" y2="6" stroke="{COLOURS["refused"][1]}" stroke-width="1.5" opacity="0.6"/>'
           "</pattern>"
           '<marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" fill="context-stroke"/></marker></defs>',
           f'<rect width="{grid.width}" height="{grid.height}" fill="#fff"/>',
           f'<text class="title" x="{LEFT}" y="20">{escape(p.sym.name)} — {p.sym.address:#x}, {p.sym.size} bytes, '
           f'{len(p.cells)} instructions; cpu profile {escape(p.image.profile.value)}</text>']
    out += _legend(p)
    # column ruler: offsets within a row, every 8 bytes
    for col in range(0, grid.per_row + 1, 8):
        x = LEFT + col * grid.px
        out.append(f'<line class="ruler-line" x1="{x}" y1="{HEAD - 8}" x2="{x}" y2="{grid.height - 8}"/>')
        if col < grid.per_row:
            out.append(f'<text class="ruler" x="{x + 2}" y="{HEAD - 10}">+{col:#x}</text>')
    for row in range(grid.rows):
        y = HEAD + row * PITCH + TOP_BAND + BOX / 2 + 4
        out.append(f'<text class="rowlabel" x="{LEFT - 8}" y="{y}" text-anchor="end">+{row * grid.per_row:#05x}</text>')
    for cell in p.cells:
        out += _insn(grid, cell)
    targets: dict[int, list[str]] = {}
    for source, target in p.branches:
        targets.setdefault(target, []).append(f"+{source:#x}")
    for where, target in p.piece_branches:
        targets.setdefault(target, []).append(where)
    for target, sources in targets.items():
        x, y = grid.x(target), grid.top(target)
        what = ", ".join(sources)
        out.append(f'<path class="target" data-offset="{target:#x}" d="M{x - 4},{y - 7} l8,0 l-4,6 z">'
                   f"<title>branch target +{target:#x}, from {what}</title></path>")
    out += [_arc(grid, s, t, "arc all", f"branch +{s:#x} -> +{t:#x}") for s, t in p.branches]
    out += [_piece_arc(grid, where, t, "arc piece", f"branch {where} -> +{t:#x}") for where, t in p.piece_branches]
    lanes: list[int] = []  # end of the last window in each lane: overlapping windows nest, not coincide
    for probe in sorted(p.probes, key=lambda m: m.window or (0, 0)):
        if probe.window is None:
            continue
        lane = next((k for k, end in enumerate(lanes) if end <= probe.window[0]), len(lanes))
        lanes[lane:lane + 1] = [probe.window[1]]
        out += _window(grid, probe, lane)
    for probe in p.probes:
        out += [_arc(grid, s, t, "arc blocker", f"+{s:#x} branches to +{t:#x}, inside the 5 bytes probe "
                     f"{probe.number}'s jump would overwrite", probe=probe.number) for s, t in probe.blockers]
        out += [_piece_arc(grid, where, t, "arc blocker piece", f"{where} branches to +{t:#x}, inside the 5 bytes "
                           f"probe {probe.number}'s jump overwrites: the kernel checks only this function and "
                           f"optimizes it anyway (KP405)", probe=probe.number) for where, t in probe.piece_blockers]
    stacked: dict[int, int] = {}
    for probe in p.probes:
        out += _pin(grid, probe, stacked)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _insn(grid: _Grid, cell: Cell) -> list[str]:
    out = [f'<g class="insn {cell.kind}" data-offset="{cell.offset:#x}">',
           f"<title>{escape(cell.title)}</title>"]
    for i, (start, stop) in enumerate(grid.spans(cell.offset, cell.offset + cell.insn.length)):
        x, y, w = grid.x(start) + 0.5, grid.top(start), (stop - start) * grid.px - 1
        part = "" if i == 0 else ' data-continued="1"'
        out.append(f'<rect x="{x}" y="{y}" width="{w}" height="{BOX}"{part}/>')
        mnemonic = cell.text.split(" ", 1)[0]
        if i == 0 and len(mnemonic) * 6.2 + 4 <= w:
            out.append(f'<text x="{x + 2.5}" y="{y + BOX / 2 + 3.5}">{escape(mnemonic)}</text>')
    out.append("</g>")
    return out


def _arc(grid: _Grid, source: int, target: int, cls: str, title: str, probe: int | None = None) -> str:
    x0, y0 = grid.x(source) + grid.px / 2, grid.top(source)
    x1, y1 = grid.x(target), grid.top(target) - 7  # onto the branch-target mark
    lift = TOP_BAND - 4
    if y0 == grid.top(target):
        lift = min(lift, 6 + abs(x1 - x0) / 5)
        shape = f"Q{(x0 + x1) / 2:.1f},{min(y0, y1) - lift:.1f} {x1:.1f},{y1:.1f}"
    else:
        shape = f"C{x0:.1f},{y0 - lift:.1f} {x1:.1f},{y1 - lift:.1f} {x1:.1f},{y1:.1f}"
    data = f' data-probe="{probe}"' if probe is not None else ""
    return (f'<path class="{cls}"{data} data-source="{source:#x}" data-target="{target:#x}" '
            f'd="M{x0:.1f},{y0:.1f} {shape}" marker-end="url(#arrow)"><title>{escape(title)}</title></path>')


def _piece_arc(grid: _Grid, where: str, target: int, cls: str, title: str, probe: int | None = None) -> str:
    """A branch from another symbol (a .cold/.part piece): it comes in from the left margin."""
    x1, y1 = grid.x(target), grid.top(target) - 7
    x0, y0 = LEFT - 36, y1 - (TOP_BAND - 4)
    data = f' data-probe="{probe}"' if probe is not None else ""
    return (f'<path class="{cls}"{data} data-source="{escape(where)}" data-target="{target:#x}" '
            f'd="M{x0:.1f},{y0:.1f} Q{x1:.1f},{y0:.1f} {x1:.1f},{y1:.1f}" marker-end="url(#arrow)">'
            f"<title>{escape(title)}</title></path>")


def _window(grid: _Grid, probe: Marked, lane: int) -> list[str]:
    assert probe.window is not None
    start, end = probe.window
    cls = "window" if probe.kind == "optimized" else "window unoptimized"
    out = []
    inset = 3 * (lane % 3)  # nested boxes, so each overlapping window keeps its own edges
    for lo, hi in grid.spans(start, end):
        x, y = grid.x(lo) - 1.5 + inset, grid.top(lo) - 3 + inset
        out.append(f'<rect class="{cls}" data-probe="{probe.number}" data-start="{start:#x}" data-end="{end:#x}" '
                   f'x="{x}" y="{y}" width="{(hi - lo) * grid.px + 2 - 2 * inset}" height="{BOX + 6 - 2 * inset}" '
                   f'rx="2">'
                   f"<title>probe {probe.number}: jump window +{start:#x}..+{end:#x} ({end - start} bytes)</title>"
                   f"</rect>")
    x, y = grid.x(start) + 1 + inset, grid.top(start) + BOX + BOTTOM_BAND - 2
    out.append(f'<text class="window-label" x="{x}" y="{y}">{probe.number}</text>')
    return out


def _pin(grid: _Grid, probe: Marked, stacked: dict[int, int]) -> list[str]:
    n = stacked[probe.offset] = stacked.get(probe.offset, -1) + 1  # several probes at one offset side by side
    x, y = grid.x(probe.offset) + 0.5 + n * 16, grid.top(probe.offset)
    r = probe.result
    title = f"probe {probe.number}: {r.spec.text} ({_where(r)}): {state(r.verdict)}"
    fill = COLOURS[probe.kind][0]
    return [f'<g class="pin {probe.kind}" data-probe="{probe.number}" data-offset="{probe.offset:#x}">'
            f"<title>{escape(title)}</title>"
            f'<line x1="{x}" y1="{y - 15}" x2="{x}" y2="{y + 4}"/>'
            f'<circle cx="{x}" cy="{y - 17}" r="7" fill="{fill}"/>'
            f'<text x="{x}" y="{y - 13.5}">{probe.number}</text></g>']


def _where(result: ProbeResult) -> str:
    loc = result.spec.location
    return f"{loc.file}:{loc.line}"


# --------------------------------------------------------------------------------------------- HTML

_PAGE_CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1a1a1a; background: #fafafa; }
header { padding: 10px 16px 6px; border-bottom: 1px solid #ddd; background: #fff; }
header h1 { font-size: 18px; margin: 0 0 4px; font-family: ui-monospace, monospace; }
header p { margin: 2px 0; font-size: 13px; color: #444; }
main { display: grid; grid-template-columns: minmax(640px, 1.25fr) minmax(480px, 1fr); gap: 12px; padding: 10px 16px; }
main svg.picture { width: 100%; height: auto; }
.pane { overflow: auto; max-height: calc(100vh - 40px); background: #fff; border: 1px solid #ddd; }
table { border-collapse: collapse; font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 12px; }
th { position: sticky; top: 0; background: #eee; text-align: left; padding: 3px 6px; }
td { padding: 1px 6px; white-space: nowrap; vertical-align: top; }
td.kind { border-left: 6px solid transparent; }
tr.hl td { background: #ffe9a8; }
td.bytes { color: #666; }
td.reason { color: #444; max-width: 52ch; overflow: hidden; text-overflow: ellipsis; }
td.mark { color: #c0182b; font-weight: bold; }
tr.in-window td.off { box-shadow: inset 3px 0 #111; }
#probes { margin: 8px 16px; background: #fff; border: 1px solid #ddd; }
#probes { max-height: 30vh; }
#probes td { white-space: normal; }
#probes td.reason { max-width: none; }
label.toggle { font-size: 13px; }
"""

_SCRIPT = """
(() => {
  const parts = (o) => document.querySelectorAll('[data-offset="' + o + '"]');
  let lit = null;
  const light = (o, on) => parts(o).forEach((e) => e.classList.toggle('hl', on));
  document.addEventListener('mouseover', (ev) => {
    const el = ev.target.closest('[data-offset]');
    const o = el ? el.dataset.offset : null;
    if (o === lit) return;
    if (lit) light(lit, false);
    lit = o;
    if (!o) return;
    light(o, true);
    const other = el.closest('svg') ? document.getElementById('insn-' + o)
                                    : document.querySelector('g.insn[data-offset="' + o + '"]');
    if (other) other.scrollIntoView({block: 'nearest', inline: 'nearest'});
  });
  const box = document.getElementById('all-arcs');
  const svg = document.querySelector('svg.picture');
  if (box && svg) { box.checked = svg.classList.contains('all-arcs');
    box.addEventListener('change', () => svg.classList.toggle('all-arcs', box.checked)); }
  document.body.dataset.ready = '1';
})();
"""


def render_html(p: Picture, source: str) -> str:
    counts = _kind_counts(p)
    total = max(1, len(p.cells))
    summary = ", ".join(f"{n} {LABELS[k]} ({100 * n / total:.0f} %)" for k, n in counts.items())
    version = p.image.version or "kernel version unknown"
    head = [f"<h1>{escape(p.sym.name)}</h1>",
            f"<p>{escape(source)} · {escape(version)} · cpu profile {escape(p.image.profile.value)}</p>",
            f"<p>{len(p.cells)} instruction boundaries, each as a probe of its own: {summary}. "
            f"Hover an instruction for the kernel's reason.</p>",
            f'<label class="toggle"><input type="checkbox" id="all-arcs"> every branch of the function as an arc '
            f"({len(p.branches)})</label>"]
    if p.elsewhere:
        head.append(f"<p>{p.elsewhere} probe(s) of the input are not in {escape(p.sym.name)} and are not shown.</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>probelint: {escape(p.sym.name)}</title><style>{_PAGE_CSS}</style></head>\n<body>\n"
            f"<header>{''.join(head)}</header>\n{_probe_table(p)}"
            f'<main><div class="pane">{render_svg(p, standalone=False)}</div>\n'
            f'<div class="pane">{_disassembly(p)}</div></main>\n<script>{_SCRIPT}</script>\n</body></html>\n')


def _probe_table(p: Picture) -> str:
    if not p.probes:
        return ""
    rows = []
    for probe in p.probes:
        r = probe.result
        window = (f"+{probe.window[0]:#x}..+{probe.window[1]:#x} ({probe.window[1] - probe.window[0]} bytes)"
                  if probe.window else "—")
        findings = "<br>".join(f"<b>{f.rule}</b> {escape(f.message)}" for f in r.findings) or "—"
        rows.append(f'<tr class="probe {probe.kind}" data-probe="{probe.number}"><td>{probe.number}</td>'
                    f"<td>{escape(r.spec.text)}</td><td>{escape(_where(r))}</td><td>+{probe.offset:#x}</td>"
                    f'<td class="kind" style="border-left-color:{COLOURS[probe.kind][1]}">{escape(state(r.verdict))}'
                    f"</td><td>{window}</td><td class=\"reason\">{findings}</td></tr>")
    return ('<div id="probes" class="pane"><table><tr><th>#</th><th>probe</th><th>from</th><th>offset</th>'
            "<th>verdict (in its set)</th><th>jump window</th><th>findings</th></tr>" + "".join(rows)
            + "</table></div>\n")


def _disassembly(p: Picture) -> str:
    pins: dict[int, list[str]] = {}
    sources: dict[int, list[str]] = {}
    inside: set[int] = set()
    for probe in p.probes:
        pins.setdefault(probe.offset, []).append(f"▼{probe.number}")
        for s, _ in probe.blockers:
            sources.setdefault(s, []).append(f"↷{probe.number}")
        if probe.window:
            inside.update(range(*probe.window))
    rows = []
    for c in p.cells:
        rule = f" {c.rule}{' ' + c.errno if c.errno else ''}" if c.rule else ""
        full = f' title="{escape(c.message)}"' if c.message else ""
        raw = c.insn.raw.hex(" ")
        shown = raw if len(c.insn.raw) <= 8 else raw[:23] + " …"  # as objdump wraps: the rest on hover
        mark = " ".join(pins.get(c.offset, []) + sources.get(c.offset, []))
        where = " in-window" if c.offset in inside else ""
        rows.append(f'<tr id="insn-{c.offset:#x}" class="insn-row {c.kind}{where}" data-offset="{c.offset:#x}">'
                    f'<td class="mark">{mark}</td><td class="off">+{c.offset:#x}</td>'
                    f'<td class="bytes" title="{raw}">{shown}</td><td>{escape(c.text)}</td>'
                    f'<td class="kind" style="border-left-color:{COLOURS[c.kind][1]}">{c.kind}{rule}</td>'
                    f'<td class="reason"{full}>{escape(c.message)}</td></tr>')
    return ('<table class="disassembly"><tr><th></th><th>offset</th><th>bytes</th><th>instruction</th>'
            "<th>class</th><th>reason</th></tr>" + "".join(rows) + "</table>")


def write(p: Picture, source: str, *, html: Path | None = None, svg: Path | None = None) -> list[Path]:
    """Write the page and/or the SVG; the paths written."""
    written = []
    for path, render in ((html, lambda: render_html(p, source)), (svg, lambda: render_svg(p))):
        if path is None:
            continue
        with replacing(path) as fh:
            fh.write(render().encode("utf-8"))
        written.append(path)
    return written
