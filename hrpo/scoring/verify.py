"""Symbolic equivalence (math-verify) with a hard per-call timeout that works from any thread.

math-verify's own timeout uses ``signal.alarm``, which only works in the main thread, and a sympy call cannot be
interrupted from Python. So the checks run in a long-lived worker process (:mod:`._verify_worker`, started on
first use with ``sys.executable``; no multiprocessing, so no re-import of the user's ``__main__``). A call that
does not answer within ``timeout`` seconds kills the worker (a fresh one is started for the next call) and
returns ``None``: the caller falls back to its string match. Answers are cached (RL groups repeat them).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0  # seconds per call; a normal check takes a few ms
_STARTUP_TIMEOUT = 120.0  # importing sympy on a loaded machine
_CACHE_SIZE = 65536
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_verify_worker.py")


def available() -> bool:
    """Whether math-verify is installed."""
    return importlib.util.find_spec("math_verify") is not None


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.ready = False

    def _readline(self, timeout: float) -> str | None:
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            return None
        return self.proc.stdout.readline() or None  # "" = the worker died

    def start(self) -> bool:
        """Wait for the worker's imports; False if it could not start."""
        if not self.ready:
            self.ready = self._readline(_STARTUP_TIMEOUT) == "ready\n"
        return self.ready

    def ask(self, gold: str, pred: str, timeout: float) -> bool | None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps([gold, pred]) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        reply = self._readline(timeout)
        return None if reply is None else reply.strip() == "1"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Verifier:
    """Thread-safe client of one worker process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self.timeouts = 0
        self._broken = False

    def equal(self, gold: str, pred: str, timeout: float = DEFAULT_TIMEOUT) -> bool | None:
        """``True``/``False`` as math-verify decides; ``None`` on timeout or when math-verify is unusable."""
        key = (gold, pred)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            if self._broken:
                return None
            if self._worker is None:
                if not available():
                    return None
                self._worker = _Worker()
            if not self._worker.start():  # e.g. math-verify fails to import: do not respawn on every call
                logger.warning("the math-verify worker did not start; MATH answers use the string match only")
                self._worker.kill()
                self._worker, self._broken = None, True
                return None
            start = time.monotonic()
            result = self._worker.ask(f"${gold}$", f"${pred}$", timeout)
            if result is None:
                self.timeouts += 1
                logger.warning(
                    "math-verify gave no answer within %.1f s for %r vs %r (%.1f s); string match used",
                    timeout,
                    pred[:80],
                    gold[:80],
                    time.monotonic() - start,
                )
                self._worker.kill()
                self._worker = _Worker()  # start the next one now, so its imports overlap other work
                return None
            self._cache[key] = result
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return result

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.kill()
                self._worker = None


_VERIFIER = Verifier()
atexit.register(_VERIFIER.close)


def _reset_after_fork() -> None:
    """A forked child (e.g. a DataLoader worker) must not share the parent's worker pipes or a held lock."""
    _VERIFIER._lock = threading.Lock()
    _VERIFIER._worker = None


os.register_at_fork(after_in_child=_reset_after_fork)


def equal(gold: str, pred: str, timeout: float = DEFAULT_TIMEOUT) -> bool | None:
    """Module-level :meth:`Verifier.equal` on the shared worker."""
    return _VERIFIER.equal(gold, pred, timeout)
