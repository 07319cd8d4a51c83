"""Tables: medians side by side, before/after comparisons, and the cross-check
against the reference harness.  Standard library only.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable

from benchmarks.spec import BY_NAME, SCENARIOS, size_label

SAME = 0.05  # ratios within 5 % of 1 are shown as "≈"
TIMES = "\u00d7"  # multiplication sign
DASH = "\u2013"  # en dash


# ---------------------------------------------------------------- numbers
def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    if unit == "s" and abs(v) < 10:
        return f"{v:.3f}"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    return f"{r:.3g}" if r < 100 else f"{r:,.0f}"


def verdict(a: float | None, b: float | None, hib: bool, name_a: str, name_b: str) -> str:
    """Which of a and b is better, and by what factor."""
    if a is None or b is None:
        if a is not None:
            return f"{name_a} ({name_b} failed)"
        if b is not None:
            return f"{name_b} ({name_a} failed)"
        return "—"
    if a <= 0 or b <= 0:
        return "?"
    f = a / b if hib else b / a  # > 1: a is better
    if abs(f - 1) < SAME:
        return "≈"
    return f"{name_a} {TIMES}{fmt_ratio(f)}" if f > 1 else f"{name_b} {TIMES}{fmt_ratio(1 / f)}"


# ---------------------------------------------------------------- summary
def summarize(runs: list[dict], impls: Iterable[str]) -> list[dict]:
    """One row per (scenario, metric) of the scenarios that were run."""
    impls = list(impls)
    ran = {r["scenario"] for r in runs}
    rows = []
    for sc in SCENARIOS:
        if sc.name not in ran:
            continue
        for m in sc.metrics:
            # a metric no run of this scenario knows: the file predates it
            known = any(m.name in (r.get("metrics") or {}) or m.name in (r.get("errors") or {})
                        for r in runs if r["scenario"] == sc.name)
            cells = {}
            for impl in impls:
                vals, errs = [], []
                for r in runs:
                    if r["impl"] != impl or r["scenario"] != sc.name:
                        continue
                    v = (r.get("metrics") or {}).get(m.name)
                    if v is not None:
                        vals.append(v)
                        continue
                    err = (r.get("errors") or {}).get(m.name)
                    if not err and not m.optional:
                        err = r.get("error")  # the scenario failed as a whole
                    if err:
                        errs.append(err)
                    elif not m.optional and known:
                        errs.append("no value reported")
                if not vals and not errs:
                    continue
                cell: dict = {"n": len(vals), "samples": vals, "errors": errs}
                if vals:
                    med = statistics.median(vals)
                    cell.update(median=med, min=min(vals), max=max(vals),
                                spread=(max(vals) - min(vals)) / med if med else None)
                cells[impl] = cell
            if not cells:
                continue
            row = {"scenario": sc.name, "metric": m.name, "key": f"{sc.name}.{m.name}",
                   "unit": m.unit, "higher_is_better": m.higher_is_better, "label": m.label,
                   "impls": cells}
            if "shoal" in impls and "dask" in impls:
                s = cells.get("shoal", {}).get("median")
                d = cells.get("dask", {}).get("median")
                row["ratio_shoal_dask"] = s / d if s is not None and d else None
                row["better"] = verdict(s, d, m.higher_is_better, "shoal", "dask")
                for a, b in (("shoal", "dask"), ("dask", "shoal")):
                    if cells.get(a, {}).get("median") is not None and b not in cells:
                        row["better"] = "—"  # an optional metric the other does not have
            rows.append(row)
    return rows


class Notes:
    """Numbered footnotes for error messages (one number per distinct message)."""

    def __init__(self) -> None:
        self.msgs: list[str] = []

    def ref(self, msg: str) -> int:
        msg = " ".join(msg.split())[:400]
        if msg not in self.msgs:
            self.msgs.append(msg)
        return self.msgs.index(msg) + 1

    def lines(self) -> list[str]:
        return [f"[{i}] {m}" for i, m in enumerate(self.msgs, 1)]


def cell_text(cell: dict | None, unit: str, notes: Notes, spread: bool) -> str:
    if cell is None:
        return ""
    errs = cell.get("errors") or []
    refs = sorted({notes.ref(e) for e in errs})
    tag = ("error " if cell["n"] == 0 else "") + "".join(f"[{i}]" for i in refs)
    if cell["n"] == 0:
        return tag
    text = fmt(cell["median"], unit)
    if spread and cell["n"] > 1:
        text += f" ({fmt(cell['min'], unit)}{DASH}{fmt(cell['max'], unit)})"
    elif cell.get("spread") is not None and cell["spread"] > 0.5:
        text += " ±!"
    if errs:
        text += f" ({len(errs)} failed {tag})"
    return text


def side_by_side(doc: dict, spread: bool = False) -> str:
    """The markdown table of one results document."""
    impls = doc["impls"]
    rows = summarize(doc["runs"], impls)  # recomputed: the saved summary is for other tools
    sizes = doc["config"]["sizes"]
    notes = Notes()
    both = "shoal" in impls and "dask" in impls
    head = ["scenario", "metric"] + list(impls) + (["shoal/dask", "better"] if both else [])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    last = None
    for row in rows:
        sc = BY_NAME[row["scenario"]]
        label = ""
        if row["scenario"] != last:
            sz = size_label(sc, sizes)
            label = f"{sc.name}" + (f" ({sz})" if sz else "")
            last = row["scenario"]
        arrow = "↑" if row["higher_is_better"] else "↓"
        cols = [label, f"{row['label']}, {row['unit']} {arrow}"]
        cols += [cell_text(row["impls"].get(i), row["unit"], notes, spread) for i in impls]
        if both:
            cols += [fmt_ratio(row.get("ratio_shoal_dask")), row.get("better", "")]
        out.append("| " + " | ".join(cols) + " |")
    m = doc.get("machine", {})
    reps = doc["config"].get("repeat")
    out.append("")
    out.append(f"Medians of {reps} repeat(s), each a fresh process and cluster; "
               f"{m.get('cpu_count')} CPUs, {m.get('versions', {}).get('python', '?')}, "
               f"shoal {m.get('versions', {}).get('shoal', '?')} "
               f"(git {str(m.get('git', {}).get('commit', ''))[:10]}"
               f"{', shoal/ modified' if m.get('git', {}).get('shoal_dirty') else ''}), "
               f"distributed {m.get('versions', {}).get('distributed', '—')}. "
               "↑ higher is better, ↓ lower is better; ±! = spread over 50 % of the median.")
    commits = []
    for r in doc["runs"]:
        c = str((r.get("git") or {}).get("commit", ""))[:10]
        if c and c not in commits:
            commits.append(c)
    if len(commits) > 1:
        out.append(f"The repository changed during the run: children ran at commits "
                   f"{', '.join(commits)} (per child in the JSON, `runs[].git`).")
    if notes.msgs:
        out.append("")
        out.append("Errors:")
        out += notes.lines()
    return "\n".join(out)


# ---------------------------------------------------------------- compare
def _index(doc: dict) -> dict[tuple[str, str], dict]:
    rows = summarize(doc["runs"], doc["impls"])
    out = {}
    for row in rows:
        for impl, cell in row["impls"].items():
            out[(row["key"], impl)] = {**cell, "unit": row["unit"],
                                       "hib": row["higher_is_better"], "label": row["label"]}
    return out


def change(before: float | None, after: float | None, hib: bool) -> str:
    v = verdict(after, before, hib, "better", "worse")
    return v.replace("better (worse failed)", "now measured").replace(
        "worse (better failed)", "now fails")


def compare(a: dict, b: dict) -> str:
    """Before (a) / after (b) table, per metric and implementation."""
    ia, ib = _index(a), _index(b)
    keys = list(ia) + [k for k in ib if k not in ia]
    order = {f"{s.name}.{m.name}": i for i, (s, m) in
             enumerate((s, m) for s in SCENARIOS for m in s.metrics)}
    impl_rank = {"shoal": 0, "dask": 1}
    keys.sort(key=lambda k: (order.get(k[0], 999), impl_rank.get(k[1], 9), k[1]))
    notes = Notes()
    out = [f"A = {a.get('started', '?')} (git {str(a.get('machine', {}).get('git', {}).get('commit', ''))[:10]}), "
           f"B = {b.get('started', '?')} (git {str(b.get('machine', {}).get('git', {}).get('commit', ''))[:10]})",
           "",
           "| metric | impl | A | B | B/A | change |", "|---|---|---|---|---|---|"]
    for k in keys:
        ca, cb = ia.get(k), ib.get(k)
        c = ca or cb
        assert c is not None
        unit, hib = c["unit"], c["hib"]
        va, vb = (ca or {}).get("median"), (cb or {}).get("median")
        ratio = vb / va if va and vb is not None else None
        out.append(f"| {k[0]} ({unit} {'↑' if hib else '↓'}) | {k[1]} | "
                   f"{cell_text(ca, unit, notes, False)} | {cell_text(cb, unit, notes, False)} | "
                   f"{fmt_ratio(ratio)} | {change(va, vb, hib)} |")
    if notes.msgs:
        out += ["", "Errors:", *notes.lines()]
    return "\n".join(out)


# ---------------------------------------------------------------- reference harness
#: our metric -> the reference harness's metric name
REFERENCE_NAMES = {
    "startup.import_s": "import_s",
    "startup.first_result_s": "startup_s",
    "startup.close_s": "close_s",
    "latency.median_us": "latency_us_median",
    "latency.p99_us": "latency_us_p99",
    "map.tasks_per_s": "throughput_map_tasks_per_s",
    "chain.tasks_per_s": "throughput_chain_tasks_per_s",
    "tree.tasks_per_s": "tree_reduce_tasks_per_s",
    "scatter_gather.scatter_MBps": "scatter_MBps",
    "scatter_gather.gather_MBps": "gather_MBps",
    "scatter_gather.scatter_direct_MBps": "scatter_direct_MBps",
    "scatter_gather.gather_direct_MBps": "gather_direct_MBps",
    "worker_to_worker.MBps": "worker_to_worker_MBps",
    "worker_to_worker.net_MBps": "worker_to_worker_net_MBps",
    "waiting.bytes_per_task": "scheduler_bytes_per_task",
    "waiting.cancel_s": "cancel_drain_s",  # an extra of the reference's record
    "actor.median_us": "actor_call_us_median",
    "actor.p99_us": "actor_call_us_p99",
}


def read_reference(path: str) -> dict[tuple[str, str], dict]:
    """{(reference metric or scenario, impl): {samples, errors, unit, hib}}, merging
    the records of several invocations (one per repeat) of the reference harness."""
    out: dict[tuple[str, str], dict] = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            e = out.setdefault((rec["name"], rec["impl"]), {
                "samples": [], "errors": [], "unit": rec.get("unit"),
                "hib": rec.get("higher_is_better"), "scenario": rec.get("scenario")})
            if rec.get("unit"):
                e["unit"], e["hib"] = rec["unit"], rec.get("higher_is_better")
            if rec.get("skipped"):
                e["errors"].append("skipped: " + rec["skipped"])
            elif rec.get("error"):
                e["errors"].append(rec["error"])
            else:
                e["samples"] += rec.get("samples") or [rec["value"]]
            if rec.get("name") != "scheduler_bytes_per_task":
                continue
            for x in rec.get("extra") or []:  # the reference's cancel drain time
                if not isinstance(x, dict):
                    continue
                c = out.setdefault(("cancel_drain_s", rec["impl"]), {
                    "samples": [], "errors": [], "unit": "s", "hib": False,
                    "scenario": rec.get("scenario")})
                if "cancel_drain_s" in x:
                    c["samples"].append(x["cancel_drain_s"])
                elif "cancel_not_drained_after_s" in x:
                    c["errors"].append(f"not drained after {x['cancel_not_drained_after_s']} s"
                                       + (f" ({x['cancel_note']})" if x.get("cancel_note") else ""))
    return out


def reference_table(path: str) -> str:
    data = read_reference(path)
    names: list[str] = []
    impls: list[str] = []
    for name, impl in data:
        if name not in names:
            names.append(name)
        if impl not in impls:
            impls.append(impl)
    impls = [i for i in ("shoal", "dask") if i in impls] + [i for i in impls if i not in ("shoal", "dask")]
    both = "shoal" in impls and "dask" in impls
    notes = Notes()
    head = ["reference metric", *impls] + (["shoal/dask", "better"] if both else [])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        unit = next((data[(name, i)]["unit"] for i in impls if (name, i) in data
                     and data[(name, i)]["unit"]), "") or ""
        hib = bool(next((data[(name, i)]["hib"] for i in impls if (name, i) in data
                         and data[(name, i)]["hib"] is not None), False))
        cols = [f"{name} ({unit} {'↑' if hib else '↓'})"]
        med = {}
        for i in impls:
            e = data.get((name, i))
            if e is None:
                cols.append("")
                continue
            cell = {"n": len(e["samples"]), "errors": e["errors"]}
            if e["samples"]:
                med[i] = cell["median"] = statistics.median(e["samples"])
                cell.update(min=min(e["samples"]), max=max(e["samples"]))
                cell["spread"] = (cell["max"] - cell["min"]) / cell["median"] if cell["median"] else None
            cols.append(cell_text(cell, unit, notes, False))
        if both:
            s, d = med.get("shoal"), med.get("dask")
            v = verdict(s, d, hib, "shoal", "dask")
            if (s is None and (name, "shoal") not in data) or (d is None and (name, "dask") not in data):
                v = "—"  # not reported (rather than failed) by one of them
            cols += [fmt_ratio(s / d if s is not None and d else None), v]
        out.append("| " + " | ".join(cols) + " |")
    if notes.msgs:
        out += ["", "Errors:", *notes.lines()]
    return "\n".join(out)


def cross_check(ours: dict, ref_path: str, tolerance: float = 1.5) -> str:
    """Our medians next to the reference harness's, per implementation.  'agrees'
    when the two are within a factor ``tolerance`` of each other (the machine is
    shared: separate runs of the same code differ by tens of percent)."""
    mine = _index(ours)
    ref = read_reference(ref_path)
    names = REFERENCE_NAMES
    out = [f"| metric | impl | ours | reference | ours/ref | agrees ({TIMES}{tolerance:g}) |",
           "|---|---|---|---|---|---|"]
    notes = Notes()
    for key, rname in names.items():
        for impl in ours["impls"]:
            a, r = mine.get((key, impl)), ref.get((rname, impl))
            if a is None and r is None:
                continue
            unit = (a or {}).get("unit") or (r or {}).get("unit") or ""
            va = (a or {}).get("median")
            vr = statistics.median(r["samples"]) if r and r["samples"] else None
            rt = va / vr if va is not None and vr else None
            ok = "—" if rt is None else ("yes" if 1 / tolerance <= rt <= tolerance else "NO")
            rcell = "" if r is None else (fmt(vr, unit) if vr is not None else
                                          "error " + "".join(f"[{i}]" for i in sorted({notes.ref(e) for e in r["errors"]})))
            out.append(f"| {key} ({unit}) | {impl} | {cell_text(a, unit, notes, False)} | {rcell} | "
                       f"{fmt_ratio(rt)} | {ok} |")
    if notes.msgs:
        out += ["", "Errors:", *notes.lines()]
    return "\n".join(out)
