"""A build report as one self-contained HTML page (no network, no external scripts).

The page shows the source tree before and after as two treemaps by size (directories
three levels deep, each split into the bytes kept and the bytes removed; the "after"
map's area is the kept share of the "before" map's), the packages (whole, partial,
removed), a searchable table of kept paths and their reasons, the verification
rounds and the stage timings.  The treemaps are SVG laid out here (squarified, so
the page needs no script to draw them); a small inline script filters the table.
Every number the page shows carries a ``data-n`` attribute with its exact value,
so tests can check it against the JSON report.  Deterministic: the same report
gives the same bytes.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ocislim.humanize import human_size
from ocislim.outputs import write_text_atomic

WIDTH, HEIGHT = 960, 420
_KEPT, _REMOVED = "#2e8b57", "#c9c9c9"


def _groups(report: dict[str, Any], depth: int = 3) -> list[tuple[str, int, int]]:
    """``(directory, kept bytes, removed bytes)`` per directory ``depth`` levels deep."""
    sums: dict[str, list[int]] = {}
    for index, items in ((0, report.get("kept", [])), (1, report.get("removed", []))):
        for item in items:
            if item.get("kind") != "file" or not item.get("size"):
                continue
            parts = item["path"].strip("/").split("/")
            key = "/" + "/".join(parts[: min(depth, max(len(parts) - 1, 1))])
            sums.setdefault(key, [0, 0])[index] += int(item["size"])
    return sorted(((k, v[0], v[1]) for k, v in sums.items()), key=lambda g: (-(g[1] + g[2]), g[0]))


Rect = tuple[float, float, float, float]


def squarify(sizes: Sequence[float], rect: Rect) -> list[Rect]:
    """Rectangles for ``sizes`` (sorted largest first) tiling ``rect`` (Bruls et al.)."""
    total = sum(sizes)
    x, y, w, h = rect
    if total <= 0 or w <= 0 or h <= 0:
        return [(x, y, 0.0, 0.0) for _ in sizes]
    scale = w * h / total
    areas = [s * scale for s in sizes]
    out: list[Rect] = []
    row: list[float] = []

    def worst(row: list[float], side: float) -> float:
        s = sum(row)
        return max(max(side * side * r / (s * s), (s * s) / (side * side * r)) for r in row)

    i = 0
    while i < len(areas):
        side = min(w, h)
        candidate = [*row, areas[i]]
        if not row or worst(candidate, side) <= worst(row, side):
            row = candidate
            i += 1
            continue
        x, y, w, h = _lay_row(row, (x, y, w, h), out)
        row = []
    if row:
        _lay_row(row, (x, y, w, h), out)
    return out


def _lay_row(row: list[float], rect: Rect, out: list[Rect]) -> Rect:
    x, y, w, h = rect
    s = sum(row)
    if w >= h:  # a column on the left
        col = s / h if h else 0.0
        yy = y
        for a in row:
            hh = a / col if col else 0.0
            out.append((x, yy, col, hh))
            yy += hh
        return (x + col, y, w - col, h)
    band = s / w if w else 0.0
    xx = x
    for a in row:
        ww = a / band if band else 0.0
        out.append((xx, y, ww, band))
        xx += ww
    return (x, y + band, w, h - band)


def _treemap(groups: list[tuple[str, int, int]], after: bool, total: int) -> str:
    """One treemap as inline SVG; ``after``: kept bytes only, area scaled to the kept share."""
    sizes = [k if after else k + r for _, k, r in groups]
    kept_total = sum(k for _, k, _ in groups)
    height = HEIGHT * (kept_total / total) if after and total else HEIGHT
    height = max(height, 1.0)
    shown = [(g, s) for g, s in zip(groups, sizes, strict=True) if s > 0]
    rects = squarify([s for _, s in shown], (0.0, 0.0, float(WIDTH), height))
    parts = [
        f'<svg class="treemap" id="treemap-{"after" if after else "before"}" '
        f'viewBox="0 0 {WIDTH} {height:.1f}" width="{WIDTH}" height="{height:.1f}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for ((name, kept, removed), _), (x, y, w, h) in zip(shown, rects, strict=True):
        title = html.escape(f"{name}: {human_size(kept)} kept, {human_size(removed)} removed")
        parts.append(f'<g class="cell" data-path="{html.escape(name)}"><title>{title}</title>')
        share = kept / (kept + removed) if not after and kept + removed else 1.0
        if w >= h:
            kw = w * share
            parts.append(_rect(x, y, kw, h, _KEPT, "kept"))
            parts.append(_rect(x + kw, y, w - kw, h, _REMOVED, "removed"))
        else:
            kh = h * share
            parts.append(_rect(x, y, w, kh, _KEPT, "kept"))
            parts.append(_rect(x, y + kh, w, h - kh, _REMOVED, "removed"))
        if w > 60 and h > 14:
            label = html.escape(name if len(name) * 7 < w else name.rsplit("/", 1)[-1])
            parts.append(
                f'<text x="{x + 3:.1f}" y="{y + 12:.1f}" font-size="11" fill="#000">{label}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _rect(x: float, y: float, w: float, h: float, color: str, cls: str) -> str:
    if w <= 0 or h <= 0:
        return ""
    return (
        f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
        f'fill="{color}" stroke="#fff" stroke-width="0.5"/>'
    )


def _num(value: Any, shown: str | None = None, key: str = "") -> str:
    text = html.escape(shown if shown is not None else str(value))
    return f'<span class="n" data-key="{key}" data-n="{html.escape(str(value))}">{text}</span>'


def _size(value: int, key: str) -> str:
    return _num(value, human_size(value), key)


def _paths(side: dict[str, Any]) -> str:
    """A side's path count (every kind but the root; see the README's glossary)."""
    kinds = ("files", "directories", "symlinks", "other")
    if "paths" in side:
        return _num(side["paths"], key="source-paths")
    if all(k in side for k in kinds):
        return _num(sum(side[k] for k in kinds), key="source-paths")
    return "-"


def _reasons(reasons: Iterable[dict[str, Any]]) -> str:
    out = []
    for r in reasons:
        extra = r.get("rule") or r.get("flag") or r.get("process") or r.get("by") or ""
        out.append(f"{r['source']}" + (f" ({extra})" if extra else ""))
    return "; ".join(out)


_STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
td.r,th.r{text-align:right}.legend .sw{display:inline-block;width:12px;height:12px;margin:0 4px}
.treemap{display:block;margin:6px 0;border:1px solid #ddd}#filter{width:360px;padding:4px}
.whole{color:#2e8b57}.partial{color:#b8860b}.removed{color:#999}
"""

_SCRIPT = """
(function () {
  var input = document.getElementById('filter');
  var rows = document.querySelectorAll('#kept tbody tr');
  var count = document.getElementById('shown');
  function apply() {
    var q = input.value.toLowerCase(), n = 0;
    for (var i = 0; i < rows.length; i++) {
      var hit = rows[i].textContent.toLowerCase().indexOf(q) >= 0;
      rows[i].style.display = hit ? '' : 'none';
      if (hit) n++;
    }
    count.textContent = String(n);
  }
  input.addEventListener('input', apply);
  apply();
})();
"""


def render(report: dict[str, Any]) -> str:
    """The page for ``report`` (a validated ``slim.report.json`` object)."""
    src, out = report["source"], report["output"]
    groups = _groups(report)
    total = sum(k + r for _, k, r in groups)
    kept_bytes = sum(k for _, k, _ in groups)
    packages = report.get("packages") or {"counts": {}, "list": []}
    counts = packages.get("counts", {})
    kept = [k for k in report["kept"] if k["path"] != "/"]  # older reports listed the root
    removed = _num(len(report.get("removed", [])), key="removed-paths")
    rows = []
    for item in kept:
        rows.append(
            f"<tr><td>{html.escape(item['path'])}</td><td>{item['kind']}</td>"
            f'<td class="r">{item["size"]}</td>'
            f"<td>{html.escape(_reasons(item['reasons']))}</td></tr>"
        )
    pkg_rows = []
    for p in packages.get("list", []):
        state = p.get("state") or "unknown"
        pkg_rows.append(
            f'<tr class="{state}"><td>{p["manager"]}</td><td>{html.escape(p["name"])}</td>'
            f"<td>{html.escape(p['version'])}</td><td>{state}</td>"
            f'<td class="r">{p["kept"]}</td><td class="r">{p["removed"]}</td></tr>'
        )
    rounds = []
    for r in report["verification"]["rounds"]:
        outcome = r["outcome"]
        rounds.append(
            f"<tr><td>{r['round']}</td><td>{outcome['exit_code']}</td>"
            f'<td class="r">{len(r["missing"])}</td><td class="r">{len(r["added"])}</td>'
            f"<td>{html.escape('; '.join(r['differences']) or '-')}</td></tr>"
        )
    timings = "".join(
        f"<tr><td>{html.escape(k)}</td>"
        f'<td class="r">{_num(v, f"{v:.2f}s", "timing-" + k)}</td></tr>'
        for k, v in sorted(report["timings"].items())
    )
    passed = report["verification"]["passed"]
    title = f"ocislim build report: {src.get('reference') or src['image']}"
    body = f"""<h1>{html.escape(title)}</h1>
<p>Source {html.escape(src["manifest_digest"])}
&rarr; slim {html.escape(str(out["manifest_digest"]))}</p>
<table id="summary">
<tr><th></th><th class="r">source</th><th class="r">slim</th></tr>
<tr><td>files</td><td class="r">{_num(src["files"], key="source-files")}</td>
<td class="r">{_num(out["files"], key="output-files")}</td></tr>
<tr><td>content</td><td class="r">{_size(src["content_size"], "source-content")}</td>
<td class="r">{_size(out["content_size"], "output-content")}</td></tr>
<tr><td>paths</td>
<td class="r">{_paths(src)} ({removed} removed)</td>
<td class="r">{_num(len(kept), key="kept-paths")} kept</td></tr>
</table>
<h2>Tree by size</h2>
<p class="legend"><span class="sw" style="background:{_KEPT}"></span>kept
<span class="sw" style="background:{_REMOVED}"></span>removed &mdash; file bytes:
{_size(kept_bytes, "treemap-kept")} kept of {_size(total, "treemap-total")}</p>
<h3>Before</h3>{_treemap(groups, False, total)}
<h3>After</h3>{_treemap(groups, True, total)}
<h2>Packages ({html.escape(str(packages.get("mode", "-")))})</h2>
<p>whole {_num(counts.get("whole", 0), key="packages-whole")},
partial {_num(counts.get("partial", 0), key="packages-partial")},
removed {_num(counts.get("removed", 0), key="packages-removed")}</p>
<table id="packages"><thead><tr><th>manager</th><th>name</th><th>version</th><th>state</th>
<th class="r">kept files</th><th class="r">removed files</th></tr></thead>
<tbody>{"".join(pkg_rows)}</tbody></table>
<h2>Kept paths</h2>
<p><input id="filter" type="search" placeholder="filter paths and reasons">
showing <span id="shown">{len(rows)}</span> of {_num(len(rows), key="kept-rows")}</p>
<table id="kept"><thead><tr><th>path</th><th>kind</th><th class="r">size</th>
<th>reasons</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>Verification: {"passed" if passed else "skipped" if passed is None else "FAILED"}</h2>
<p>{_num(len(report["verification"]["rounds"]), key="verification-rounds")} round(s)</p>
<table id="rounds"><thead><tr><th>round</th><th>exit code</th><th class="r">missing</th>
<th class="r">added</th><th>differences</th></tr></thead><tbody>{"".join(rounds)}</tbody></table>
<h2>Stage timings</h2>
<table id="timings">{timings}</table>
"""
    data = json.dumps({"version": report["version"], "ocislim": report["ocislim"]}, sort_keys=True)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<style>{_STYLE}</style></head><body>{body}"
        f'<script type="application/json" id="meta">{html.escape(data, quote=False)}</script>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def write_html(report: dict[str, Any], path: Path) -> None:
    """Write the page for ``report`` to ``path`` (atomic)."""
    # Names that are not UTF-8 come back from JSON as lone surrogates: show them escaped.
    text = render(report).encode("utf-8", "backslashreplace").decode("utf-8")
    write_text_atomic(path, text)
