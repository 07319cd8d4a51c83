"""The recent log lines of this process, kept for ``client.get_worker_logs()``,
``client.get_scheduler_logs()`` and ``LocalCluster.get_logs()``.

One ``LogBuffer`` per process: a ``logging.Handler`` on the root logger, so it
sees the records of shoal's loggers and of user code in tasks alike (each
record once: records propagate to the root).  A record is formatted when it
arrives and kept as ``(time, level name, text)`` in a bounded deque: no
``LogRecord`` (and nothing its arguments or traceback point at) outlives the
call that logged it.  Which records arrive is up to the loggers' levels: the
scheduler and worker processes set shoal's loggers to INFO and print only
what their ``--log-level`` asks for (see ``shoal.cluster.run``).
"""

from __future__ import annotations

import logging
import threading
from collections import deque

DEFAULT_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"

_installed: LogBuffer | None = None
_install_lock = threading.Lock()


class LogBuffer(logging.Handler):
    """A handler keeping the last ``maxlen`` records as text."""

    def __init__(self, maxlen: int, fmt: str = DEFAULT_FORMAT) -> None:
        super().__init__()
        self.records: deque[tuple[float, str, str]] = deque(maxlen=maxlen)
        self.setFormatter(logging.Formatter(fmt))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.records.append((record.created, record.levelname, text))

    def grow(self, maxlen: int) -> None:
        """Keep at least ``maxlen`` records from now on."""
        if self.records.maxlen is not None and maxlen > self.records.maxlen:
            self.records = deque(self.records, maxlen=maxlen)

    def tail(self, n: int | None = None, start: float = 0.0) -> list[tuple[str, str]]:
        """``[(level, text), ...]``, newest first: at most ``n`` (None: all
        kept) of those logged at or after ``start`` (dask's layout)."""
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
            raise ValueError(f"n must be a count of log lines or None, got {n!r}")
        out: list[tuple[str, str]] = []
        for created, level, text in reversed(list(self.records)):
            if (n is not None and len(out) >= n) or created < start:
                break
            out.append((level, text))
        return out


def install(maxlen: int, fmt: str = DEFAULT_FORMAT) -> LogBuffer:
    """This process's buffer, on the root logger (made on the first call;
    later calls only make it keep more)."""
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = LogBuffer(maxlen, fmt)
            logging.getLogger().addHandler(_installed)
        else:
            _installed.grow(maxlen)
        return _installed
