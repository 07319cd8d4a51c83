"""The page ``performance_report`` writes: one standalone HTML file (no
network resources, no JavaScript library) with the summary numbers, the
time per function, the task stream, the workers' profile and the code that
ran.  Pure: data in, a string out.
"""

from __future__ import annotations

import html
from typing import Any

from shoal.diagnostics import html as pages
from shoal.units import format_bytes, format_time

_REPORT = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 13px sans-serif; margin: 16px; max-width: 1400px; }}
svg text {{ font: 11px monospace; pointer-events: none; }}
.box {{ cursor: pointer; }}
.box rect {{ stroke: white; stroke-width: 1; }}
.note {{ color: #555; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.bar {{ display: inline-block; height: 10px; background: #4a7fd6; }}
pre {{ background: #f4f4f4; padding: 8px; overflow: auto; }}
@media (prefers-color-scheme: dark) {{
  body {{ background: #16191e; color: #e3e8ef; }} .note {{ color: #9aa6b4; }}
  td, th {{ border-color: #333; }} pre {{ background: #222; }}
}}
</style></head>
<body><h2>{title}</h2>
<h3>Summary</h3>{summary}
<h3>Time per function</h3>{functions}
<h3>Task stream</h3><p class="note">{stream_note}</p>{stream}
<h3>Worker profile</h3><p class="note">{profile_note}</p>{profile}
<h3>Code</h3>{code}
{script}
</body></html>
"""


def function_rows(records: list[dict[str, Any]], key_prefix: Any) -> list[dict[str, Any]]:
    """Per function: runs, failures, compute seconds, transfer seconds."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        name = key_prefix(r["key"])
        row = out.setdefault(name, {"name": name, "runs": 0, "erred": 0, "compute": 0.0, "transfer": 0.0})
        row["runs"] += 1
        row["erred"] += r.get("status") != "OK"
        for s in r["startstops"]:
            kind = "compute" if s["action"] == "compute" else "transfer"
            row[kind] += s["stop"] - s["start"]
    return sorted(out.values(), key=lambda row: -row["compute"])


def report(records: list[dict[str, Any]], profile: dict[str, Any], info: dict[str, Any],
           start: float, stop: float, code: str, key_prefix: Any, interval: float,
           title: str = "shoal performance report") -> str:
    """The whole page.  ``info``: ``scheduler_info()`` at the end;
    ``start``/``stop``: unix times of the block."""
    rows = function_rows(records, key_prefix)
    compute = sum(r["compute"] for r in rows)
    transfer = sum(r["transfer"] for r in rows)
    workers = info.get("workers", {})
    memory = sum(w.get("memory_limit", 0) for w in workers.values())
    summary_rows = [
        ("Duration", format_time(stop - start)),
        ("Tasks run", f"{len(records):,}"),
        ("Failed runs", f"{sum(r['erred'] for r in rows):,}"),
        ("Compute time", format_time(compute)),
        ("Transfer time", format_time(transfer)),
        ("Workers", str(info.get("n_workers", len(workers)))),
        ("Threads", str(info.get("total_threads", 0))),
        ("Memory limit", format_bytes(memory) if memory else "no limit"),
        ("Scheduler", html.escape(str(info.get("address", "")))),
    ]
    summary = "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in summary_rows) + "</table>"
    widest = max((r["compute"] for r in rows), default=0.0) or 1.0
    functions = "<table><tr><th>function</th><th>runs</th><th>failed</th><th>compute</th>" \
                "<th>mean</th><th>transfer</th><th></th></tr>" + "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td class=num>{r['runs']:,}</td>"
        f"<td class=num>{r['erred']:,}</td><td class=num>{format_time(r['compute'])}</td>"
        f"<td class=num>{format_time(r['compute'] / r['runs'])}</td>"
        f"<td class=num>{format_time(r['transfer'])}</td>"
        f"<td><span class=bar style='width:{300 * r['compute'] / widest:.0f}px'></span></td></tr>"
        for r in rows) + "</table>" if rows else "<p class=note>No tasks ran.</p>"
    stream_note, stream = pages.task_stream_parts(records, key_prefix)
    profile_note, profile_svg, script = pages.flame_graph_parts(profile, interval)
    return _REPORT.format(
        title=html.escape(title), summary=summary, functions=functions, stream_note=stream_note,
        stream=stream, profile_note=profile_note, profile=profile_svg,
        code=f"<pre>{html.escape(code)}</pre>" if code else "<p class=note>(not available)</p>",
        script=script,
    )
