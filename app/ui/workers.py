"""Background work for the GUI: QRunnable workers whose results come back as Qt signals."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)


class WorkerSignals(QObject):
    """Signals of one worker; delivered on the GUI thread (queued connections)."""

    returned = Signal(object)
    errored = Signal(object)  # the exception instance
    progress = Signal(int, int)
    finished = Signal()


class Worker(QRunnable):
    """Run ``fn(*args, **kwargs)`` on a pool thread and report through ``signals``.

    If ``fn`` accepts ``progress=`` or ``cancel=`` keyword arguments they can be passed explicitly;
    ``self.cancel`` is a threading.Event the GUI sets to ask the work to stop.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the pool must not delete it while Python still holds the signals
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.signals = WorkerSignals()
        self.cancel = threading.Event()

    def report_progress(self, done: int, total: int) -> None:
        """Thread-safe progress callback suitable for app.core functions."""
        self.signals.progress.emit(int(done), int(total))

    @Slot()
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
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max_threads)
        self._live: set[Worker] = set()

    @property
    def pool(self) -> QThreadPool:
        return self._pool

    def start(self, what: str, fn: Callable[..., Any], *args: Any,
              on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              on_progress: Callable[[int, int], None] | None = None,
              on_finished: Callable[[], None] | None = None,
              with_control: bool = False,
              **kwargs: Any) -> Worker:
        """Run ``fn`` in the pool. ``what`` names the task in error messages ("Classifying chest.png").

        With ``with_control`` the function also gets ``cancel=`` (threading.Event) and ``progress=``
        (callable(done, total)) keyword arguments.
        """
        worker = Worker(fn, *args, **kwargs)
        if with_control:
            worker.kwargs.update(cancel=worker.cancel, progress=worker.report_progress)
        # Connect everything before start(), as the worker may finish at once.
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
        self._pool.start(worker)
        return worker

    def _done(self, worker: Worker) -> None:
        self._live.discard(worker)
        self.busyChanged.emit(len(self._live))

    @property
    def active(self) -> int:
        return len(self._live)

    def cancel_all(self) -> None:
        for w in list(self._live):
            w.cancel.set()

    def wait(self, msecs: int = -1) -> bool:
        """Block until all workers are done (used at shutdown and in tests)."""
        return self._pool.waitForDone(msecs)
