"""Drives the open case: reading, classifying, explaining, feedback and exports, all in workers."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.ui import tasks
from app.ui.document import CaseDocument
from app.ui.notify import Notifier
from app.ui.workers import TaskRunner


class ModelState(QObject):
    """Which model is in use and whether it is ready; the status bar and the result panel show it."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = "none"  # "none" | "loading" | "ready" | "failed"
        self.card = None
        self.model_dir: Path | None = None
        self.error = ""

    def set(self, state: str, *, card=None, model_dir=None, error: str = "") -> None:
        self.state, self.error = state, error
        if card is not None or state != "ready":
            self.card = card if card is not None else self.card
        if model_dir is not None:
            self.model_dir = Path(model_dir)
        self.changed.emit()

    @property
    def text(self) -> str:
        if self.state == "loading":
            return "Loading model…"
        if self.state == "ready" and self.card is not None:
            demo = " (demonstration)" if self.card.demo else ""
            return f"Ready: {self.card.name} {self.card.version}{demo}"
        if self.state == "failed":
            return "No model — see Settings › Model"
        return "No model loaded"


class CaseController(QObject):
    """Runs every slow step of a case in the task runner and puts the outcome into ``document``."""

    historyChanged = Signal()
    feedbackSaved = Signal(object)  # the updated Case
    exported = Signal(str)  # path written
    legendReady = Signal(object)  # QImage

    def __init__(self, document: CaseDocument, notifier: Notifier, runner: TaskRunner, service,
                 model: ModelState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.document, self.notifier, self.runner, self.service, self.model = (
            document, notifier, runner, service, model)
        self.history = None
        self.labelled = None
        self._generation = 0  # results of an older request are dropped
        self._opened: tasks.Opened | None = None
        self._pending = False  # classification waiting for the model
        self.case = None  # app.core.history.Case of the case on screen

    def set_stores(self, history, labelled) -> None:
        self.history, self.labelled = history, labelled

    # ---- model
    def load_model(self, model_dir: Path) -> None:
        """Load the model in a worker; a pending classification runs once it is ready."""
        self.model.set("loading", model_dir=model_dir)
        self.runner.start("Loading the model", self._load, Path(model_dir),
                          on_result=self._model_loaded, on_error=self._model_failed)

    def adopt_loaded(self) -> None:
        """Use the model the service already holds (e.g. after a restart of the window in one process)."""
        self._model_loaded((self.service.card, tasks.legend_image()))
        self.model.set("ready", card=self.service.card, model_dir=self.service.model_dir)

    def _load(self, model_dir: Path):
        card = self.service.load(model_dir)
        return card, tasks.legend_image()

    def _model_loaded(self, value) -> None:
        card, legend = value
        self.model.set("ready", card=card)
        self.legendReady.emit(legend)
        if self._pending and self._opened is not None and self.document.result_allowed:
            self._classify()

    def _model_failed(self, exc: BaseException) -> None:
        self.model.set("failed", error=str(exc))
        self.notifier.task_failed("Loading the model", exc)
        if self._pending:
            self.document.set_state("failed")

    # ---- open and classify
    def open(self, path: str | Path) -> None:
        """Read ``path`` in a worker, then show it and classify it (unless guardrails hold it back)."""
        path = Path(path)
        self._generation += 1
        gen = self._generation
        self._opened, self._pending, self.case = None, False, None
        self.document.clear()
        self.document.path = path
        self.document.set_state("reading")
        self.runner.start(f"Opening {path.name}", tasks.open_image, path,
                          on_result=lambda o: self._on_opened(gen, o),
                          on_error=lambda e: self._on_failed(gen, f"Opening {path.name}", e))

    def _on_failed(self, gen: int, what: str, exc: BaseException) -> None:
        if gen != self._generation:
            return
        self.document.set_state("failed")
        self.notifier.task_failed(what, exc)

    def _on_opened(self, gen: int, opened: tasks.Opened) -> None:
        if gen != self._generation:
            return
        self._opened = opened
        doc = self.document
        doc.set_image(opened.path, opened.radiograph, opened.image, opened.display)
        held = bool(opened.warnings)
        doc.set_warnings(opened.warnings, allowed=not held)
        if held:
            doc.set_state("blocked")
            self.notifier.warning(f"{opened.path.name}: the image may not suit the model — see the caution "
                                  "above the image.")
            return
        self._classify()

    def insist(self) -> None:
        """The clinician chose to see the result despite the guardrail warnings."""
        if self._opened is None or self.document.result_allowed:
            return
        self.document.set_warnings(self._opened.warnings, allowed=True)
        self._classify()

    def _classify(self) -> None:
        opened, gen = self._opened, self._generation
        if opened is None:
            return
        if not self.service.loaded:
            self._pending = True
            self.document.set_state("waiting" if self.model.state == "loading" else "failed")
            if self.model.state != "loading":
                self.notifier.error("No model is loaded, so the image cannot be classified. Choose a model "
                                    "in Settings › Model.")
            return
        self._pending = False
        self.document.set_state("classifying")
        self.runner.start(f"Classifying {opened.path.name}", tasks.classify, self.service, self.history, opened,
                          on_result=lambda c: self._on_classified(gen, c),
                          on_error=lambda e: self._on_failed(gen, f"Classifying {opened.path.name}", e))

    def _on_classified(self, gen: int, c: tasks.Classified) -> None:
        if gen != self._generation:
            return
        self.case = c.case
        doc = self.document
        doc.set_result(c.result, c.prediction)
        doc.set_heat(c.prediction.class_index, c.heat, None, c.heat_image)
        doc.set_state("result")
        if c.history_error is not None:
            self.notifier.task_failed("Saving the case in the history", c.history_error)
        else:
            self.historyChanged.emit()

    # ---- reopen from the history
    def reopen(self, case_id) -> None:
        self._generation += 1
        gen = self._generation
        self._pending = False
        self.document.clear()
        self.document.set_state("reading")
        service = self.service if self.service.loaded else None
        self.runner.start("Reopening the case", tasks.reopen, service, self.history, case_id,
                          on_result=lambda r: self._on_reopened(gen, r),
                          on_error=lambda e: self._on_failed(gen, "Reopening the case", e))

    def _on_reopened(self, gen: int, r: tasks.Reopened) -> None:
        if gen != self._generation:
            return
        self._opened, self.case = r.opened, r.case
        doc = self.document
        doc.set_image(r.opened.path, r.opened.radiograph, r.opened.image, r.opened.display)
        doc.set_warnings([_Stored(w) for w in r.case.warnings], allowed=True)
        doc.set_result(r.result, r.prediction)
        if r.heat is not None:
            doc.set_heat(r.result.predicted, r.heat, None, r.heat_image)
        doc.set_state("result")
        for note in r.notes:
            self.notifier.info(note)

    # ---- explain another class
    def explain(self, class_index: int) -> None:
        pred = self.document.prediction
        if pred is None:
            return
        gen = self._generation
        self.runner.start("Computing the heatmap", tasks.explain, self.service, pred, int(class_index),
                          on_result=lambda v: self._on_explained(gen, v),
                          on_error=lambda e: self._on_failed(gen, "Computing the heatmap", e))

    def _on_explained(self, gen: int, value) -> None:
        if gen != self._generation:
            return
        idx, heat, image = value
        self.document.set_heat(idx, heat, None, image)

    # ---- feedback
    def save_feedback(self, label: str, note: str) -> None:
        if self.case is None or self.history is None:
            self.notifier.error("This case is not in the history, so its label cannot be saved.")
            return
        path = self._opened.path if self._opened is not None and self._opened.path.is_file() else None
        self.runner.start("Saving your label", tasks.save_feedback, self.history, self.labelled, self.case.id,
                          label, note, path, on_result=self._on_feedback)

    def _on_feedback(self, value) -> None:
        case, stored = value
        if self.case is not None and case.id == self.case.id:
            self.case = case
            res = self.document.result
            if res is not None:
                res.feedback_label, res.feedback_note = case.feedback_label, case.feedback_note
        where = f" ({stored})" if stored else ""
        self.notifier.info(f"Label saved: {case.file_name} is in the local labelled set{where}.")
        self.feedbackSaved.emit(case)
        self.historyChanged.emit()

    # ---- exports
    def can_export(self) -> bool:
        return self.document.radiograph is not None and self.document.result is not None

    def export_pdf(self, path: str | Path) -> None:
        if not self.can_export() or self.case is None:
            self.notifier.error("There is no classified case to export. Open an image first.")
            return
        doc = self.document
        self.runner.start("Exporting the PDF report", tasks.export_pdf, Path(path), case=self.case,
                          radiograph=doc.radiograph, display=doc.display, heat=doc.heat,
                          alpha=doc.overlay_opacity, card=self.service.card, explained=self._explained_name(),
                          on_result=self._on_exported)

    def export_png(self, path: str | Path) -> None:
        if not self.can_export():
            self.notifier.error("There is no classified case to export. Open an image first.")
            return
        doc = self.document
        self.runner.start("Exporting the overlay image", tasks.export_png, Path(path),
                          radiograph=doc.radiograph, display=doc.display, heat=doc.heat,
                          alpha=doc.overlay_opacity, caption=self._caption(), on_result=self._on_exported)

    def _explained_name(self) -> str | None:
        from fl.classes import CLASSES

        idx = self.document.explained_class
        return CLASSES[idx] if idx is not None else None

    def _caption(self) -> str:
        from fl.classes import CLASS_LABELS, CLASSES

        doc, res = self.document, self.document.result
        finding = CLASS_LABELS[CLASSES[res.predicted]]
        p = 100 * float(res.probabilities[res.predicted])
        name = self._explained_name()
        explained = f"; heatmap: {CLASS_LABELS[name]}" if name else ""
        return (f"{doc.name} — top finding {finding} ({p:.1f} %){explained} — model {res.model_name} "
                f"{res.model_version}")

    def _on_exported(self, path: Path) -> None:
        self.notifier.info(f"Saved {path}.")
        self.exported.emit(str(path))


class _Stored:
    """A guardrail warning as stored in the history (text only)."""

    def __init__(self, message: str) -> None:
        self.code, self.message = "stored", message
