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
            demo = " (demonstration)" if self.card.demo and "demonstration" not in self.card.name.lower() else ""
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
        self._saving = False  # a shown result is being written to the history
        self._warnings: list | None = None  # guardrail outcome of the open image (None: not checked yet)
        self._classified: tasks.Classified | None = None
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
        if getattr(self.service, "notice", None):  # e.g. the LiteRT artefact was refused and TensorFlow runs the model instead
            self.notifier.warning(self.service.notice)
        self.legendReady.emit(legend)
        if self._pending and self._opened is not None:
            self._classify()

    def _model_failed(self, exc: BaseException) -> None:
        self.model.set("failed", error=str(exc))
        self.notifier.task_failed("Loading the model", exc)
        if self._pending:
            self.document.set_state("failed")

    # ---- open and classify
    def open(self, path: str | Path) -> None:
        """Read ``path`` in a worker and show it; then check the guardrails and classify, side by side."""
        path = Path(path)
        self._generation += 1
        gen = self._generation
        self._opened, self._pending, self.case = None, False, None
        self._warnings, self._classified = None, None  # outcomes of the two parallel steps
        self.document.clear()
        self.document.path = path
        self.document.set_state("reading")
        # One worker reads, hands the image over for display, and goes straight on to classify it.
        self.runner.start(f"Opening {path.name}", tasks.open_and_classify, path, self.service,
                          on_partial=lambda o: self._on_opened(gen, o),
                          on_result=lambda c: self._on_open_classified(gen, path, c),
                          on_error=lambda e: self._on_failed(gen, f"Opening {path.name}", e))

    def _on_open_classified(self, gen: int, path: Path, outcome) -> None:
        if gen != self._generation:
            return
        if outcome is None:  # the model was not loaded when the image was read
            self._classify()
        elif isinstance(outcome, BaseException):
            self._on_failed(gen, f"Classifying {path.name}", outcome)
        else:
            self._on_classified(gen, outcome)

    def _on_failed(self, gen: int, what: str, exc: BaseException) -> None:
        if gen != self._generation:
            return
        self.document.set_state("failed")
        self.notifier.task_failed(what, exc)

    def _on_opened(self, gen: int, opened: tasks.Opened) -> None:
        if gen != self._generation:
            return
        self._opened = opened
        self.document.set_image(opened.path, opened.radiograph, opened.image, opened.display)
        # The guardrail check and the classification run at the same time; the result is shown only
        # when the check is clean or the clinician insists.
        self.runner.start(f"Checking {opened.path.name}", tasks.check, opened.radiograph,
                          on_result=lambda w: self._on_checked(gen, w),
                          on_error=lambda e: self._on_failed(gen, f"Checking {opened.path.name}", e))
        self._update_state()

    def _on_checked(self, gen: int, warnings: list) -> None:
        if gen != self._generation:
            return
        self._warnings = list(warnings)
        self._opened.warnings = self._warnings
        # With warnings the banner says why and offers "Show result anyway".
        self.document.set_warnings(self._warnings, allowed=not self._warnings)
        self._maybe_show(gen)

    def insist(self) -> None:
        """The clinician chose to see the result despite the guardrail warnings."""
        if self._opened is None or self.document.result_allowed:
            return
        self.document.set_warnings(self._opened.warnings, allowed=True)
        self._maybe_show(self._generation)

    def _classify(self) -> None:
        opened, gen = self._opened, self._generation
        if opened is None:
            return
        if not self.service.loaded:
            self._pending = True
            if self.model.state != "loading":
                self.document.set_state("failed")
                self.notifier.error("No model is loaded, so the image cannot be classified. Choose a model "
                                    "in Settings › Model.")
            else:
                self._update_state()
            return
        self._pending = False
        self._update_state()
        self.runner.start(f"Classifying {opened.path.name}", tasks.classify, self.service, opened,
                          on_result=lambda c: self._on_classified(gen, c),
                          on_error=lambda e: self._on_failed(gen, f"Classifying {opened.path.name}", e))

    def _on_classified(self, gen: int, c: tasks.Classified) -> None:
        if gen != self._generation:
            return
        self._classified = c
        self._maybe_show(gen)

    def _maybe_show(self, gen: int) -> None:
        """Show the classification once the guardrails are clean or the clinician insisted."""
        c, doc = self._classified, self.document
        if gen != self._generation or doc.result is not None or doc.state == "failed":
            return
        if c is None or self._warnings is None or not doc.result_allowed:
            self._update_state()
            return
        c.result.guardrails = tuple(getattr(w, "message", w) for w in self._warnings)  # shown anyway: outside the use
        doc.set_result(c.result, c.prediction)
        doc.set_heat(c.prediction.class_index, c.heat, None, c.heat_image)
        doc.set_state("result")
        # Then record it: the clinician sees the result without waiting for the disk.
        if self.history is None:
            self.notifier.error("The case history is not available, so this result is not recorded.")
            return
        self._saving = True
        self.runner.start("Saving the case in the history", tasks.store_case, self.history, c.prediction,
                          self._opened, c.result.assessment, on_result=lambda case: self._on_stored(gen, case),
                          on_finished=self._stored_done)

    def cancel(self) -> bool:
        """Stop waiting for the open case (its running step finishes unseen); True if there was one."""
        if self.document.state not in ("reading", "classifying", "waiting"):
            return False
        self._generation += 1
        self._pending = False
        self.document.set_state("cancelled")
        self.notifier.info(f"Stopped classifying {self.document.name}. Open it again to classify it.")
        return True

    def _update_state(self) -> None:
        """The waiting state the result panel shows while no result is on screen."""
        doc = self.document
        if doc.result is not None or doc.state == "failed":
            return
        if self._warnings and not doc.result_allowed:
            doc.set_state("blocked")
        elif self._pending:
            doc.set_state("waiting")
        else:
            doc.set_state("classifying")

    def _stored_done(self) -> None:
        self._saving = False

    def _on_stored(self, gen: int, case) -> None:
        self.historyChanged.emit()
        if gen != self._generation or self.document.result is None:
            return
        self.case = case
        res = self.document.result
        res.case_id, res.created = case.id, case.created
        # An image labelled before (the same pixels) shows the label it already has.
        res.feedback_label, res.feedback_note = case.feedback_label, case.feedback_note
        res.feedback_by, res.feedback_at, res.feedback_reason = case.feedback_by, case.feedback_at, case.feedback_reason
        self.document.caseStored.emit()

    # ---- reopen from the history
    def reopen(self, case_id) -> None:
        self._generation += 1
        gen = self._generation
        self._pending, self._warnings, self._classified = False, None, None
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
    def save_feedback(self, label: str, note: str, reason: str = "") -> None:
        if self.case is None or self.history is None:
            self.notifier.error("This case is not in the history, so its label cannot be saved.")
            return
        path = self._opened.path if self._opened is not None and self._opened.path.is_file() else None
        self.runner.start("Saving your label", tasks.save_feedback, self.history, self.labelled, self.case.id,
                          label, note, path, reason, on_result=self._on_feedback)

    def _on_feedback(self, value) -> None:
        case, stored = value
        if self.case is not None and case.id == self.case.id:
            self.case = case
            res = self.document.result
            if res is not None:
                res.feedback_label, res.feedback_note = case.feedback_label, case.feedback_note
                res.feedback_by, res.feedback_at = case.feedback_by, case.feedback_at
                res.feedback_reason = case.feedback_reason
        where = f" ({stored})" if stored else ""
        self.notifier.info(f"Label saved: {case.file_name} is in the local labelled set{where}.")
        self.feedbackSaved.emit(case)
        self.historyChanged.emit()

    # ---- exports
    def can_export(self) -> bool:
        return self.document.radiograph is not None and self.document.result is not None

    def export_pdf(self, path: str | Path) -> None:
        if not self.can_export():
            self.notifier.error("There is no classified case to export. Open an image first.")
            return
        if self.case is None:
            self.notifier.error("The case is still being saved in the history (or could not be saved); the "
                                "PDF report needs it. Try again in a moment.")
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
