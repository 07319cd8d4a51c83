"""The HTML reprs of the client, the cluster, the scheduler and its workers,
drawn from ``scheduler_info()`` with the templates of ``shoal.widgets``
(dask.distributed's layout: what the seeds' notebooks show)."""

from __future__ import annotations

import html
import time
from typing import Any

from shoal.units import format_bytes
from shoal.widgets import render


def link(url: str | None) -> str:
    if not url:
        return "none"
    u = html.escape(url)
    return f'<a href="{u}" target="_blank">{u}</a>'


def ago(started: float | None, now: float | None = None) -> str:
    """``Just now``, ``5 minutes ago``... as dask shows when a scheduler started."""
    if not started:
        return "unknown"
    seconds = max(0.0, (now if now is not None else time.time()) - started)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "Just now"


def totals(info: dict[str, Any]) -> tuple[int, int, int]:
    """Workers, threads and memory of a ``scheduler_info()``."""
    workers = info.get("workers", {})
    n = int(info.get("n_workers", len(workers)))
    threads = int(info.get("total_threads", sum(w.get("nthreads", 0) for w in workers.values())))
    memory = int(info.get("total_memory", sum(w.get("memory_limit", 0) for w in workers.values())))
    return n, threads, memory


def scheduler_html(info: dict[str, Any], dashboard_link: str | None) -> str:
    """The scheduler and each of its workers, as in dask."""
    n, threads, memory = totals(info)
    rows = []
    for address, w in info.get("workers", {}).items():
        limit = int(w.get("memory_limit") or 0)
        rows.append(render(
            "worker.html", name=html.escape(str(w.get("name", address))), address=html.escape(address),
            threads=int(w.get("nthreads", 0)), dashboard="none (the scheduler's shows every worker)",
            memory=format_bytes(limit) if limit else "no limit",
            nanny=html.escape(str(w.get("nanny") or "none")),
            local_directory=html.escape(str(w.get("local_directory") or "")),
        ))
    return render(
        "scheduler.html", id=html.escape(str(info.get("id", ""))),
        address=html.escape(str(info.get("address", ""))), workers=n, dashboard=link(dashboard_link),
        threads=threads, started=ago(info.get("started")),
        memory=format_bytes(memory) if memory else "no limit", worker_rows="".join(rows),
    )


def details(title: str, body: str) -> str:
    return render("details.html", title=html.escape(title), body=body)


def cluster_html(cluster_type: str, name: str, dashboard_link: str | None, info: dict[str, Any],
                 status: str, processes: bool | None) -> str:
    n, threads, memory = totals(info)
    inner = scheduler_html(info, dashboard_link) if info.get("address") else ""
    return render(
        "cluster.html", cluster_type=html.escape(cluster_type), name=html.escape(name),
        dashboard=link(dashboard_link), workers=n, threads=threads,
        memory=format_bytes(memory) if memory else "no limit", status=html.escape(status),
        processes="unknown" if processes is None else processes,
        details=details("Scheduler Info", inner) if inner else "",
    )


def client_html(client_id: str, cluster: Any, dashboard_link: str | None, status: str,
                info: dict[str, Any] | None) -> str:
    """The client: how it is connected, its dashboard, and the cluster or
    scheduler behind it (collapsed)."""
    if cluster is not None:
        method = "Cluster object"
        kind = f"<strong>Cluster type:</strong> {html.escape(type(cluster).__module__.split('.')[0])}." \
               f"{html.escape(type(cluster).__name__)}"
        inner = details("Cluster Info", cluster._repr_html_()) if hasattr(cluster, "_repr_html_") else ""
    else:
        method = "Direct"
        kind = ""
        inner = details("Scheduler Info", scheduler_html(info, dashboard_link)) if info else ""
    return render("client.html", client_id=html.escape(client_id), connection_method=method,
                  cluster_type=kind, dashboard=link(dashboard_link), status=html.escape(status),
                  details=inner)
