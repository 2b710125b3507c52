"""Thread pools shared within a process, made anew in a forked child.

A forked child inherits a pool object whose threads did not survive the
fork: every pool here is created lazily, per process id.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor


class ProcessThreadPool:
    """A lazily created ``ThreadPoolExecutor`` of this process.

    Call the instance for the executor.
    """

    def __init__(self, max_workers, name):
        self.max_workers = max_workers
        self.name = name
        self._lock = threading.Lock()
        self._pool = None
        self._pid = None

    def __call__(self):
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix=self.name)
                self._pid = os.getpid()
            return self._pool
