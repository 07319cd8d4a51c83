"""Standalone HTML pages: a flame graph of a profile (``client.profile(
filename=...)``) and a chart of a task stream (``get_task_stream(plot="save")``).

One file each, no network resources: inline SVG drawn here, plus a few lines
of inline JavaScript for zooming the flame graph.  Each box is a nested
``<svg>`` whose viewport clips its label; its ``<title>`` is the tooltip.
Pure: strings in, a string out.
"""

from __future__ import annotations

import html
import zlib
from typing import Any

from shoal.units import format_time

ROW = 18  # pixels per row

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 13px sans-serif; margin: 12px; }}
svg text {{ font: 11px monospace; pointer-events: none; }}
.box {{ cursor: pointer; }}
.box rect {{ stroke: white; stroke-width: 1; }}
.note {{ color: #555; }}
</style></head>
<body><h3>{title}</h3><p class="note">{note}</p>
{body}
{script}
</body></html>
"""

_ZOOM = """<script>
(function () {
  var boxes = Array.prototype.slice.call(document.querySelectorAll(".box"));
  function show(x0, x1, depth) {
    boxes.forEach(function (b) {
      var a = +b.dataset.x0, z = +b.dataset.x1, d = +b.dataset.d;
      var visible = z > x0 && a < x1 && (d >= depth || (a <= x0 && z >= x1));
      b.style.display = visible ? "" : "none";
      if (!visible) return;
      var l = Math.max(a, x0), r = Math.min(z, x1);
      b.setAttribute("x", (100 * (l - x0) / (x1 - x0)) + "%");
      b.setAttribute("width", (100 * (r - l) / (x1 - x0)) + "%");
    });
  }
  boxes.forEach(function (b) {
    b.addEventListener("click", function () { show(+b.dataset.x0, +b.dataset.x1, +b.dataset.d); });
  });
  document.getElementById("reset").addEventListener("click", function () { show(0, 1, 0); });
})();
</script>"""


def color(name: str, light: int = 70) -> str:
    """A stable colour for a file or key prefix name."""
    hue = zlib.crc32(name.encode()) % 360
    return f"hsl({hue},55%,{light}%)"


def _box(x0: float, x1: float, depth: int, fill: str, label: str, tip: str,
         zoomable: bool = True) -> str:
    extra = f' class="box" data-x0="{x0:.6f}" data-x1="{x1:.6f}" data-d="{depth}"' if zoomable else ""
    return (
        f'<svg x="{100 * x0:.4f}%" y="{depth * ROW}" width="{100 * (x1 - x0):.4f}%" height="{ROW}"{extra}>'
        f'<title>{html.escape(tip)}</title><rect width="100%" height="100%" fill="{fill}"/>'
        f'<text x="3" y="{ROW - 5}">{html.escape(label)}</text></svg>'
    )


def flame_graph(tree: dict[str, Any], title: str = "shoal profile", interval: float = 0.01,
                min_fraction: float = 0.0005) -> str:
    """An HTML page drawing the call tree ``tree`` (``shoal.diagnostics.
    profiling`` layout) as an icicle graph: the root on top, callees below,
    widths in proportion to samples.  Click a box to zoom into it."""
    note, body, script = flame_graph_parts(tree, interval, min_fraction)
    return _PAGE.format(title=html.escape(title), note=note, body=body, script=script)


def flame_graph_parts(tree: dict[str, Any], interval: float = 0.01,
                      min_fraction: float = 0.0005) -> tuple[str, str, str]:
    """``(note, svg, script)`` of ``flame_graph``, for a page of several parts."""
    total = tree["count"]
    boxes: list[str] = []
    depth_max = 0

    def walk(node: dict[str, Any], x0: float, depth: int) -> None:
        nonlocal depth_max
        width = node["count"] / total
        d = node["description"]
        if depth == 0:
            label = f"all ({total} samples)"
            tip = label
            fill = "#ccc"
        else:
            label = d["name"]
            tip = (f'{d["name"]}  {d["filename"]}:{d["line_number"]}\n{d["line"]}\n'
                   f'{node["count"]} samples, {100 * width:.1f}%, ~{format_time(node["count"] * interval)}')
            fill = color(f'{d["filename"]}:{d["name"]}')
        boxes.append(_box(x0, x0 + width, depth, fill, label, tip))
        depth_max = max(depth_max, depth)
        x = x0
        for child in sorted(node["children"].values(), key=lambda c: c["description"]["name"]):
            if child["count"] / total >= min_fraction:
                walk(child, x, depth + 1)
            x += child["count"] / total

    if not total:
        return "No samples: no task ran while the profiler was looking.", "", ""
    walk(tree, 0.0, 0)
    note = (f"{total} samples, about one every {format_time(interval)}. "
            "Hover for details; click a box to zoom, "
            '<button id="reset">reset zoom</button>')
    body = f'<svg width="100%" height="{(depth_max + 1) * ROW}">{"".join(boxes)}</svg>'
    return note, body, _ZOOM


def task_stream(records: list[dict[str, Any]], title: str = "shoal task stream",
                key_prefix: Any = None) -> str:
    """An HTML page drawing task-stream records (``shoal.diagnostics.
    task_stream`` layout): one row per worker thread, one box per compute or
    transfer, time running left to right."""
    note, body = task_stream_parts(records, key_prefix)
    return _PAGE.format(title=html.escape(title), note=note, body=body, script="")


def task_stream_parts(records: list[dict[str, Any]], key_prefix: Any = None) -> tuple[str, str]:
    """``(note, svg)`` of ``task_stream``, for a page of several parts."""
    spans = [s for r in records for s in r["startstops"]]
    if not spans:
        return "No tasks ran in this period.", ""
    t0 = min(s["start"] for s in spans)
    t1 = max(s["stop"] for s in spans)
    width = max(t1 - t0, 1e-9)
    rows: dict[str, int] = {}
    boxes = []
    for r in sorted(records, key=lambda r: (r["worker"], str(r["thread"]))):
        row = rows.setdefault(f'{r["worker"]} thread {r["thread"]}', len(rows))
        name = key_prefix(r["key"]) if key_prefix else r["key"]
        for s in r["startstops"]:
            action = s["action"]
            if action == "compute":
                fill = color(name, 60) if r["status"] == "OK" else "black"
            else:
                fill = "hsl(0,70%,70%)"
            duration = s["stop"] - s["start"]
            tip = f'{r["key"]}\n{action} on {r["worker"]}, {format_time(duration)}'
            if "source" in s:
                tip += f' from {s["source"]}'
            if r["status"] != "OK":
                tip += "\n(failed)"
            label = name if action == "compute" else f"{action}-{name}"
            boxes.append(_box((s["start"] - t0) / width, (s["stop"] - t0) / width, row, fill,
                              label, tip, zoomable=False))
    legend = "<br>".join(f"row {i}: {html.escape(name)}" for name, i in rows.items())
    note = f"{len(records)} task runs over {format_time(t1 - t0)}. Hover for details.<br>{legend}"
    return note, f'<svg width="100%" height="{len(rows) * ROW}">{"".join(boxes)}</svg>'
