"""The main window: composes the case page, history and statistics, and wires actions to the controller."""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.ui import dialogs, menus
from app.ui.actions import Actions
from app.ui.banners import INTENDED_USE, IntendedUseBar, MessageBar
from app.ui.case_page import CasePage
from app.ui.controller import CaseController, ModelState
from app.ui.document import CaseDocument
from app.ui.federation_indicator import FederationIndicator
from app.ui.federation_model import FederationModel
from app.ui.federation_page import FederationPage
from app.ui.history_view import HistoryView
from app.ui.icons import app_icon
from app.ui.labelled_view import LabelledView
from app.ui.notify import ERROR, Message, Notifier
from app.ui.stats_view import StatsView
from app.ui.workers import TaskRunner

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.dcm *.dicom);;DICOM (*.dcm *.dicom *);;All files (*)"
APP_TITLE = "FedXray"


class MainWindow(QMainWindow):
    """FedXray's window. Shows at once; the model loads in the background (``model.changed``)."""

    def __init__(self, prefs=None, *, service=None, load_model: bool = True) -> None:
        super().__init__()
        from app.core.inference import InferenceService
        from app.core.settings import Preferences

        self.prefs = prefs if prefs is not None else Preferences.load()
        self.notifier = Notifier(self)
        self.runner = TaskRunner(self.notifier.task_failed, self, max_threads=3)
        self.document = CaseDocument(self)
        self.document.set_overlay(visible=self.prefs.heatmap_visible, opacity=self.prefs.heatmap_opacity)
        # The app converts a model without a LiteRT artefact once, in the background, for its next start.
        self.service = service if service is not None else InferenceService(convert_missing=True)
        self.model = ModelState(self)
        self.controller = CaseController(self.document, self.notifier, self.runner, self.service, self.model, self)
        self.history = self.labelled = None
        self.queue: list[Path] = []  # images given on the command line, navigable with PgUp/PgDown
        self.batch_dialog = None
        self.enrol_wizard = None
        self.federation = FederationModel(self.notifier, self)  # polls the background agent in workers
        self._stale: set = set()  # history/statistics views to refresh when next shown
        self._recent_timer = QTimer(self)
        self._recent_timer.setSingleShot(True)
        self._recent_timer.setInterval(2000)
        self._recent_timer.timeout.connect(self._save_recent)

        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.act = Actions(self)
        self._build()
        menus.build(self)
        self._connect()
        self._restore_geometry()
        if self.prefs.problem:
            self.notifier.warning(self.prefs.problem)
        self._open_stores()
        QTimer.singleShot(0, self.federation.start)
        if self.service.loaded:
            self.controller.adopt_loaded()
        elif load_model:
            QTimer.singleShot(0, self.load_active_model)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.message_bar = MessageBar()
        self.case_page = CasePage(self.document)
        self.history_view = HistoryView()
        self.stats_view = StatsView()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.case_page, "Case")
        self.tabs.addTab(self.history_view, "History")
        self.tabs.addTab(self.stats_view, "Statistics")
        self.labelled_view = LabelledView()
        self.tabs.addTab(self.labelled_view, "Labelled set")
        self.federation_page = FederationPage(self.federation)
        self.tabs.addTab(self.federation_page, "Federation")
        self.intended_use = IntendedUseBar()
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.message_bar)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(self.intended_use)
        self.setCentralWidget(central)

        self.toolbar = QToolBar("Main")
        self.toolbar.setObjectName("mainToolbar")
        self.toolbar.setMovable(False)
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.addToolBar(self.toolbar)

        self.model_status = QLabel()
        self.model_status.setObjectName("modelStatus")
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(90)
        self.busy.setMaximumHeight(12)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self.statusBar().addPermanentWidget(self.busy)
        self.federation_indicator = FederationIndicator(self.federation)
        self.statusBar().addPermanentWidget(self.federation_indicator)
        self.statusBar().addPermanentWidget(self.model_status)
        self.statusBar().setSizeGripEnabled(True)

    def _connect(self) -> None:
        a, c, doc = self.act, self.controller, self.document
        self.notifier.posted.connect(self._show_message)
        self.runner.busyChanged.connect(lambda n: self.busy.setVisible(n > 0))
        self.model.changed.connect(self._on_model)
        c.historyChanged.connect(self._refresh_history)
        c.imageOpened.connect(self._opened)
        c.legendReady.connect(self.case_page.result.legend.set_ramp)
        c.feedbackSaved.connect(lambda case: self.case_page.feedback.saved(case.feedback_label))
        doc.imageChanged.connect(self._update_title)
        doc.imageChanged.connect(self._new_case)
        doc.stateChanged.connect(self._update_actions)
        doc.overlayChanged.connect(self._sync_checks)
        doc.displayChanged.connect(self._sync_checks)
        self.case_page.banner.insisted.connect(c.insist)
        self.case_page.result.explainRequested.connect(c.explain)
        self.case_page.feedback.submitted.connect(c.save_feedback)
        self.history_view.openRequested.connect(self.reopen_case)
        self.labelled_view.openRequested.connect(self.reopen_case)
        self.history_view.deleteRequested.connect(self.delete_cases)

        view = self.case_page.view
        a.open.triggered.connect(self._open_dialog)
        a.open_folder.triggered.connect(lambda: self.show_batch())
        a.export_pdf.triggered.connect(self._export_pdf_dialog)
        a.export_png.triggered.connect(self._export_png_dialog)
        a.settings.triggered.connect(self.show_settings)
        a.quit.triggered.connect(self.close)
        a.fit.triggered.connect(view.viewer.fit)
        a.zoom_in.triggered.connect(lambda: view.viewer.zoom_by(1.25))
        a.zoom_out.triggered.connect(lambda: view.viewer.zoom_by(0.8))
        a.actual_size.triggered.connect(lambda: view.viewer.set_zoom(1.0 / max(self.devicePixelRatioF(), 1.0)))
        a.invert.triggered.connect(view.toggle_invert)
        a.heatmap.triggered.connect(lambda on: doc.set_overlay(visible=on))
        a.side_by_side.triggered.connect(lambda on: doc.set_overlay(side_by_side=on))
        a.preset_default.triggered.connect(lambda: view.apply_preset("File default"))
        a.preset_lung.triggered.connect(lambda: view.apply_preset("Lung"))
        a.preset_mediastinum.triggered.connect(lambda: view.apply_preset("Mediastinum"))
        a.cancel.triggered.connect(c.cancel)
        a.next_image.triggered.connect(lambda: self._step_queue(+1))
        a.prev_image.triggered.connect(lambda: self._step_queue(-1))
        a.show_case.triggered.connect(lambda: self.tabs.setCurrentWidget(self.case_page))
        a.show_history.triggered.connect(lambda: self.tabs.setCurrentWidget(self.history_view))
        a.find_history.triggered.connect(self.find_in_history)
        a.show_stats.triggered.connect(lambda: self.tabs.setCurrentWidget(self.stats_view))
        a.show_federation.triggered.connect(self.show_federation)
        a.enrol.triggered.connect(self.show_enrol_wizard)
        self.federation_indicator.clicked.connect(self.show_federation)
        self.federation_page.enrolRequested.connect(self.show_enrol_wizard)
        self.federation.enrollmentChanged.connect(
            lambda: a.enrol.setEnabled(self.federation.enrollment is None or not self.federation.enrolled))
        a.shortcuts.triggered.connect(lambda: menus.show_shortcuts(self))
        a.about.triggered.connect(lambda: menus.show_about(self))
        self.tabs.currentChanged.connect(self._tab_changed)
        self._update_actions()
        self._sync_checks()
        self._on_model()

    # ------------------------------------------------------------------ stores and model
    def _open_stores(self) -> None:
        """Open the history and the labelled set in the data folder (errors are shown, the app goes on)."""
        from app.core.history import HistoryStore
        from app.core.labelled import LabelledSet

        if self.history is not None:
            self.history.close()
        self.history = self.labelled = None
        try:
            self.history = HistoryStore()
        except Exception as exc:  # noqa: BLE001 - classification still works without a history
            self.notifier.task_failed("Opening the case history", exc)
        try:
            self.labelled = LabelledSet()
        except Exception as exc:  # noqa: BLE001
            self.notifier.task_failed("Opening the local labelled set", exc)
        self.controller.set_stores(self.history, self.labelled)
        self.history_view.set_store(self.history)
        self.stats_view.set_store(self.history)
        self.labelled_view.set_stores(self.labelled, self.history, self.runner)

    def model_store(self):
        from app.core.models import ModelStore

        return ModelStore()

    def load_active_model(self) -> None:
        """Find the model chosen in the settings and load it in the background."""
        try:
            model = self.model_store().active(self.prefs)
        except Exception as exc:  # noqa: BLE001 - no model installed: tell the user what to do
            self.model.set("failed", error=str(exc))
            self.notifier.task_failed("Finding the model", exc)
            return
        self.case_page.result.set_model(model.card.name, model.card.version, "", model.card.demo, loading=True)
        self.controller.load_model(model.dir)

    def _on_model(self) -> None:
        m = self.model
        self.model_status.setText(m.text)
        self.model_status.setToolTip(str(m.model_dir or ""))
        if m.state == "ready" and m.card is not None and self.document.result is None:
            c = m.card
            self.case_page.result.set_model(c.name, c.version, str(c.created), c.demo, limitation=c.main_limitation)

    # ------------------------------------------------------------------ opening
    def open_paths(self, paths) -> None:
        """Open images given on the command line or dropped: the first is shown, the rest queued."""
        from app.core.batch import split_paths

        # Which are folders is asked on a worker: a path on a network share that hangs must not freeze the window.
        self.runner.start("Checking the paths", split_paths, [Path(p) for p in paths],
                          on_result=lambda split: self._open_split(*split))

    def _open_split(self, files: list[Path], folders: list[Path]) -> None:
        if files:
            self.queue = files
            self.open_image(files[0])
        if folders:
            self.show_batch(folders[0])

    def open_image(self, path) -> None:
        """Open one image: read, show, classify (all in workers)."""
        path = Path(path)
        self.tabs.setCurrentWidget(self.case_page)
        self.controller.open(path)

    def _opened(self, path: Path) -> None:
        """An image was read: it goes first in File › Open recent (its path was resolved by the worker)."""
        self.prefs.add_recent(path, resolve=False)
        self._recent_timer.start()  # saved a little later, off the GUI thread, not during classification
        menus.fill_recent(self)

    def _step_queue(self, step: int) -> None:
        if not self.queue or self.document.path is None:
            return
        try:
            i = [p.resolve() for p in self.queue].index(self.document.path.resolve())
        except ValueError:
            i = -step
        j = i + step
        if 0 <= j < len(self.queue):
            self.open_image(self.queue[j])

    def reopen_case(self, case_id) -> None:
        self.tabs.setCurrentWidget(self.case_page)
        self.controller.reopen(case_id)

    def delete_cases(self, ids: list) -> None:
        if self.history is None:
            return
        cases = [self.history.get(i) for i in ids]
        labelled = [c for c in cases if c.feedback_label]
        text = f"Delete {len(cases)} case(s) from the history?"
        if labelled:
            text += (f" {len(labelled)} of them are in the local labelled set; their images will be removed "
                     "from it too.")
        if not self.confirm("Delete cases", text + " This cannot be undone."):
            return
        for case in cases:
            try:
                self.history.delete(case.id)
                if case.feedback_label and self.labelled is not None:  # and the label of its other cases
                    from app.core.labelled import remove_label

                    remove_label(self.labelled, self.history, case.pixel_sha256)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.notifier.task_failed(f"Deleting {case.file_name}", exc)
        self.notifier.info(f"Deleted {len(cases)} case(s) from the history.")
        self._refresh_history()

    # ------------------------------------------------------------------ dialogs (tests replace these hooks)
    def ask_open_path(self) -> str:
        start = str(Path(self.prefs.recent_files[0]).parent) if self.prefs.recent_files else ""
        return dialogs.open_file(self, "Open a chest X-ray", start, IMAGE_FILTER)

    def ask_save_path(self, title: str, default: str, filt: str) -> str:
        return dialogs.save_file(self, title, default, filt)

    def confirm(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def _open_dialog(self) -> None:
        path = self.ask_open_path()
        if path:
            self.open_image(path)

    def _default_export(self, suffix: str) -> str:
        stem = self.document.path.stem if self.document.path else "case"
        folder = self.document.path.parent if self.document.path else Path.home()
        return str(folder / f"{stem}{suffix}")

    def _export_pdf_dialog(self) -> None:
        if not self.controller.can_export():
            self.notifier.error("There is no classified case to export. Open an image first.")
            return
        path = self.ask_save_path("Export PDF report", self._default_export("-fedxray-report.pdf"),
                                  "PDF (*.pdf)")
        if path:
            self.controller.export_pdf(path)

    def _export_png_dialog(self) -> None:
        if not self.controller.can_export():
            self.notifier.error("There is no classified case to export. Open an image first.")
            return
        path = self.ask_save_path("Export overlay PNG", self._default_export("-overlay.png"), "PNG (*.png)")
        if path:
            self.controller.export_png(path)

    def show_batch(self, folder=None):
        from app.ui.batch_dialog import BatchDialog

        if self.batch_dialog is None:
            self.batch_dialog = BatchDialog(self.service, self.runner, self.notifier, history=self.history,
                                            batch_size=self.prefs.batch_size, parent=self)
            self.batch_dialog.openRequested.connect(self.open_image)
            self.batch_dialog.finished_batch.connect(lambda _n: self._refresh_history())
        self.batch_dialog.history = self.history
        self.batch_dialog.show()
        self.batch_dialog.raise_()
        if folder is not None:
            self.batch_dialog.start(folder)
        return self.batch_dialog

    def show_settings(self):
        from app.ui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.prefs, self.model_store(), self.runner, self.notifier, self)
        dialog.accepted.connect(lambda: self.apply_preferences(dialog.preferences()))
        dialog.open()
        return dialog

    def show_federation(self) -> None:
        self.tabs.setCurrentWidget(self.federation_page)

    def show_enrol_wizard(self):
        """The enrol wizard (for IT); the Federation page shows the new enrolment when it is done."""
        from app.ui.enrol_wizard import EnrolWizard

        if self.enrol_wizard is None or not self.enrol_wizard.isVisible():
            self.enrol_wizard = EnrolWizard(self.federation.runner, self)
            self.enrol_wizard.enrolled.connect(lambda _e: self.federation.enrolled_now())
            self.enrol_wizard.open()
        self.enrol_wizard.raise_()
        return self.enrol_wizard

    def apply_preferences(self, prefs) -> None:
        """Save new preferences and apply them (model, heatmap defaults, data folder)."""
        old = self.prefs
        self.prefs = prefs
        if not self._save_prefs():
            return
        self.document.set_overlay(visible=prefs.heatmap_visible, opacity=prefs.heatmap_opacity)
        if prefs.data_dir != old.data_dir:
            self._open_stores()
        if prefs.model_id != old.model_id:
            self.load_active_model()

    def _save_recent(self) -> None:
        snapshot = dataclasses.replace(self.prefs, recent_files=list(self.prefs.recent_files))
        self.runner.start("Saving the recent-files list", snapshot.save)

    def _save_prefs(self) -> bool:
        try:
            self.prefs.save()
        except Exception as exc:  # noqa: BLE001 - e.g. disk full; shown to the user
            self.notifier.task_failed("Saving your preferences", exc)
            return False
        return True

    def find_in_history(self) -> None:
        self.tabs.setCurrentWidget(self.history_view)
        self.history_view.focus_search()

    # ------------------------------------------------------------------ reactions
    def _show_message(self, msg: Message) -> None:
        self.message_bar.show_message(msg)
        self.statusBar().showMessage(msg.text, 0 if msg.level == ERROR else 8000)

    def _refresh_history(self) -> None:
        """The history changed: refresh the view on screen now, the hidden ones when they are shown."""
        self._stale = {self.history_view, self.stats_view, self.labelled_view}
        self._tab_changed()

    def _tab_changed(self, _index: int = -1) -> None:
        current = self.tabs.currentWidget()
        if current in self._stale:
            self._stale.discard(current)
            current.refresh()

    def _update_title(self) -> None:
        # Qt adds the application's display name ("… — FedXray"), so the title holds only the file's name.
        self.setWindowTitle(self.document.name)

    def _new_case(self) -> None:
        """A notice about the previous case does not stay up over the next one."""
        if self.document.radiograph is None:
            self.message_bar.hide()

    def _update_actions(self, *_args) -> None:
        a, doc = self.act, self.document
        has_result = doc.result is not None
        for act in (a.export_pdf, a.export_png, a.heatmap, a.side_by_side):
            act.setEnabled(has_result)
        if has_result:
            why = None
        elif doc.state == "blocked":
            why = "not available while guardrail warnings hold the result back (choose “Show result anyway”)"
        else:
            why = "available once an image is classified"
        for name in ("export_pdf", "export_png"):
            a.explain_disabled(name, why)
        for act in (a.preset_default, a.preset_lung, a.preset_mediastinum):
            act.setEnabled(doc.is_dicom)
        for act in (a.invert, a.fit, a.zoom_in, a.zoom_out, a.actual_size):
            act.setEnabled(doc.radiograph is not None)
        for act in (a.next_image, a.prev_image):
            act.setEnabled(len(self.queue) > 1)
        a.cancel.setEnabled(doc.state in ("reading", "classifying", "waiting"))

    def _sync_checks(self) -> None:
        a, doc = self.act, self.document
        a.heatmap.setChecked(doc.overlay_visible)
        a.side_by_side.setChecked(doc.side_by_side)
        a.invert.setChecked(doc.display.invert)

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    # ------------------------------------------------------------------ geometry and closing
    def _settings(self) -> QSettings:
        return QSettings()

    def _restore_geometry(self) -> None:
        s = self._settings()
        geometry = s.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1360, 860)
        state = s.value("window/splitter")
        if state is not None:
            self.case_page.splitter.restoreState(state)

    def closeEvent(self, event: QCloseEvent) -> None:
        s = self._settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/splitter", self.case_page.splitter.saveState())
        s.sync()
        if self.batch_dialog is not None:
            self.batch_dialog.cancel()
        self.runner.cancel_all()
        self.federation.shutdown()  # stops polling; the background agent goes on
        if self._recent_timer.isActive():
            self._recent_timer.stop()
            self._save_recent()
        self.statusBar().showMessage("Finishing running tasks…")
        self.runner.wait(30000)
        if self.history is not None:
            self.history.close()
            self.history = None
        super().closeEvent(event)

    def intended_use_text(self) -> str:
        return html.unescape(INTENDED_USE)
