"""Background work for the GUI: workers on long-lived Python threads whose results come back as Qt signals.

Why not QThreadPool/QRunnable: PySide gives each run() on a reused pool thread a fresh Python thread state,
while TensorFlow keeps per-OS-thread state that refers to the old one; the second TensorFlow call traced on
a reused pool thread crashes the process (reproduced with a QCoreApplication, no widgets). A
concurrent.futures pool keeps one Python thread state per OS thread for the thread's whole life.
Signals emitted from these threads reach GUI-thread slots as queued calls.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)


class WorkerSignals(QObject):
    """Signals of one worker; delivered on the GUI thread (queued connections)."""

    returned = Signal(object)
    errored = Signal(object)  # the exception instance
    progress = Signal(int, int)
    partial = Signal(object)  # an intermediate result (e.g. the image, before its classification)
    finished = Signal()


class Worker:
    """Runs ``fn(*args, **kwargs)`` on a worker thread and reports through ``signals``.

    ``cancel`` is a threading.Event the GUI sets to ask the work to stop (for functions that take it).
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.signals = WorkerSignals()  # created on the GUI thread, so its slots run there
        self.cancel = threading.Event()

    def report_progress(self, done: int, total: int) -> None:
        """Thread-safe progress callback suitable for app.core functions."""
        self.signals.progress.emit(int(done), int(total))

    def run(self) -> None:
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - every error goes to the one error handler
            log.debug("worker %s failed:\n%s", getattr(self.fn, "__name__", self.fn), traceback.format_exc())
            self.signals.errored.emit(exc)
        else:
            self.signals.returned.emit(result)
        finally:
            self.signals.finished.emit()


class TaskRunner(QObject):
    """Starts workers, keeps them alive until they finish and routes their errors to one handler.

    ``busyChanged(int)`` tells the window how many tasks are running (for a busy indicator).
    """

    busyChanged = Signal(int)

    def __init__(self, on_error: Callable[[str, BaseException], None], parent: QObject | None = None,
                 max_threads: int = 2) -> None:
        super().__init__(parent)
        self._on_error = on_error
        self._executor = concurrent.futures.ThreadPoolExecutor(max_threads, thread_name_prefix="fedxray-worker")
        self._live: set[Worker] = set()
        self._futures: set[concurrent.futures.Future] = set()

    def start(self, what: str, fn: Callable[..., Any], *args: Any,
              on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              on_progress: Callable[[int, int], None] | None = None,
              on_finished: Callable[[], None] | None = None,
              on_partial: Callable[[Any], None] | None = None,
              with_control: bool = False,
              **kwargs: Any) -> Worker:
        """Run ``fn`` on a worker thread. ``what`` names the task in error messages ("Classifying chest.png").

        With ``with_control`` the function also gets ``cancel=`` (threading.Event) and ``progress=``
        (callable(done, total)) keyword arguments; with ``on_partial`` it gets ``partial=`` (callable(value))
        to hand over an intermediate result, delivered to ``on_partial`` before ``on_result``.
        """
        worker = Worker(fn, *args, **kwargs)
        if with_control:
            worker.kwargs.update(cancel=worker.cancel, progress=worker.report_progress)
        if on_partial is not None:
            worker.kwargs.update(partial=worker.signals.partial.emit)
            worker.signals.partial.connect(on_partial)
        # Connect everything before the work starts, as it may finish at once.
        if on_result is not None:
            worker.signals.returned.connect(on_result)
        if on_error is not None:
            worker.signals.errored.connect(on_error)
        else:
            worker.signals.errored.connect(lambda exc: self._on_error(what, exc))
        if on_progress is not None:
            worker.signals.progress.connect(on_progress)
        if on_finished is not None:
            worker.signals.finished.connect(on_finished)
        worker.signals.finished.connect(lambda: self._done(worker))
        self._live.add(worker)
        self.busyChanged.emit(len(self._live))
        future = self._executor.submit(worker.run)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return worker

    def _done(self, worker: Worker) -> None:
        self._live.discard(worker)
        self.busyChanged.emit(len(self._live))

    @property
    def active(self) -> int:
        """Tasks started whose ``finished`` has not yet been handled on the GUI thread."""
        return len(self._live)

    def cancel_all(self) -> None:
        for w in list(self._live):
            w.cancel.set()

    def wait(self, msecs: int = -1) -> bool:
        """Block until every started task has returned (used at shutdown and in benchmarks)."""
        done, pending = concurrent.futures.wait(list(self._futures), None if msecs < 0 else msecs / 1000.0)
        return not pending
