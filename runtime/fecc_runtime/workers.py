"""Worker threads for splitting a batch: what every batch engine of the runtime shares."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor


def default_threads() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class WorkerPool:
    """``n_threads − 1`` worker threads beside the caller, started on first use.

    Parameters
    ----------
    n_threads : threads a batch may use in all (default: the CPUs this process may run on).
    """

    def __init__(self, n_threads: int | None = None):
        self.n_threads = max(1, int(default_threads() if n_threads is None else n_threads))
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def get(self, name: str) -> ThreadPoolExecutor:
        """The executor (its threads named ``name``), started if it is not yet."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.n_threads - 1 or 1, thread_name_prefix=name)
            return self._pool

    def close(self) -> None:
        """Stop the worker threads (a later batch starts them again)."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
