"""``/metrics``: the cluster in Prometheus's text format, written by the
``prometheus_client`` library from the dashboard's latest status view.

Names follow Prometheus's conventions: a ``shoal_`` prefix, base units
(``_bytes``, ``_seconds``), ``_total`` for counters (use ``rate()`` for per
second: ``rate(shoal_messages_received_total[1m])``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry


class StatusCollector(Collector):
    """Metrics from one status view (``snapshot.cluster_view`` plus the
    task counts and the scheduler's numbers)."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        s = self.status
        totals = s["totals"]
        sched = s.get("scheduler", {})
        tasks = GaugeMetricFamily("shoal_tasks", "Tasks the scheduler holds, by state", labels=["state"])
        for state, n in sorted(s.get("counts", {}).items()):
            tasks.add_metric([state], n)
        yield tasks
        by_fn = GaugeMetricFamily("shoal_function_tasks", "Tasks by function (key prefix) and state",
                                  labels=["function", "state"])
        for row in s.get("progress", []):
            for state in ("waiting", "processing", "memory", "erred", "released"):
                by_fn.add_metric([row["name"], state], row[state])
        yield by_fn
        workers = GaugeMetricFamily("shoal_workers", "Workers, by status", labels=["status"])
        by_status: dict[str, int] = {}
        for w in s["workers"]:
            by_status[w["status"]] = by_status.get(w["status"], 0) + 1
        for status, n in sorted(by_status.items()):
            workers.add_metric([status], n)
        yield workers
        yield GaugeMetricFamily("shoal_threads", "Worker threads in all", value=totals["nthreads"])
        yield GaugeMetricFamily("shoal_clients", "Clients connected", value=totals["clients"])
        memory = GaugeMetricFamily("shoal_memory_bytes", "Worker memory in all, by type",
                                   labels=["type"])
        for kind in ("managed", "unmanaged", "spilled"):
            memory.add_metric([kind], totals[kind])
        yield memory
        yield GaugeMetricFamily("shoal_memory_limit_bytes", "Worker memory limits in all",
                                value=totals["memory_limit"])
        per_worker = GaugeMetricFamily("shoal_worker_memory_bytes", "Memory of each worker, by type",
                                       labels=["worker", "type"])
        cpu = GaugeMetricFamily("shoal_worker_cpu_ratio", "CPU use of each worker process "
                                "(1 = one core)", labels=["worker"])
        processing = GaugeMetricFamily("shoal_worker_processing_tasks", "Tasks each worker runs "
                                       "or is about to", labels=["worker"])
        for w in s["workers"]:
            for kind in ("managed", "unmanaged", "spilled"):
                per_worker.add_metric([w["address"], kind], w[kind])
            cpu.add_metric([w["address"]], w["cpu"] / 100)
            processing.add_metric([w["address"]], w["processing"])
        yield per_worker
        yield cpu
        yield processing
        yield CounterMetricFamily("shoal_transfer_incoming_bytes", "Bytes workers fetched from "
                                  "their peers", value=totals["transfer_incoming_bytes"])
        yield GaugeMetricFamily("shoal_event_loop_lag_seconds", "How late the scheduler's event "
                                "loop ran a timer, last measured", value=sched.get("loop_lag", 0.0))
        yield CounterMetricFamily("shoal_messages_received", "Messages the scheduler received "
                                  "from clients and workers", value=sched.get("messages_received", 0))
        yield CounterMetricFamily("shoal_transitions", "Task state transitions on the scheduler",
                                  value=sched.get("transitions", 0))


def exposition(status: dict[str, Any]) -> tuple[bytes, str]:
    """The text of ``/metrics`` and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return generate_latest(registry), CONTENT_TYPE_LATEST
