"""Settings: which installed model to use (incl. import from disk), heatmap defaults, data folder."""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.ui import dialogs
from app.ui.notify import Notifier
from app.ui.workers import TaskRunner


def card_summary(card) -> str:
    """A few lines about a model card, as rich text."""
    rows = [("Name", card.name), ("Version", card.version), ("Created", str(card.created)[:10]),
            ("Network", f"{card.arch}, {card.input_size} px")]
    metrics = getattr(card, "metrics", {}) or {}
    if isinstance(metrics.get("validation"), dict):  # fedxray train writes {"validation": {...}}
        metrics = metrics["validation"]
    for key, label in (("accuracy", "Accuracy"), ("macro_auroc", "Macro AUROC"), ("macro_f1", "Macro F1")):
        val = metrics.get(key)
        if isinstance(val, int | float):
            rows.append((f"{label} (validation)" if "validation" in (card.metrics or {}) else label,
                         f"{val:.3f}"))
    lines = "".join(f"<tr><td style='color:#5b6773;padding-right:10px'>{k}</td><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    demo = ("<p style='color:#7a4d00'><b>Demonstration model</b> — not clinically validated.</p>"
            if card.demo else "")
    desc = f"<p>{html.escape(card.description)}</p>" if getattr(card, "description", "") else ""
    return f"<table>{lines}</table>{demo}{desc}"


class SettingsDialog(QDialog):
    """Edits a copy of the Preferences; ``preferences()`` returns the result after accept()."""

    def __init__(self, prefs, store, runner: TaskRunner, notifier: Notifier, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("FedXray — Settings")
        self.resize(680, 720)
        self._prefs = dataclasses.replace(prefs, recent_files=list(prefs.recent_files))
        self.store, self.runner, self.notifier = store, runner, notifier

        # --- model
        self.models = QListWidget()
        self.models.setObjectName("modelList")
        self.card = QLabel()
        self.card.setWordWrap(True)
        self.card.setTextFormat(Qt.TextFormat.RichText)
        self.card.setAlignment(Qt.AlignmentFlag.AlignTop)
        import_button = QPushButton("Import model from disk…")
        import_button.clicked.connect(self._import_dialog)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self._remove)
        model_box = QGroupBox("Model")
        ml = QVBoxLayout(model_box)
        self.models.setMaximumHeight(72)
        ml.addWidget(self.models)
        card_scroll = QScrollArea()  # long model cards scroll instead of being cut off
        card_scroll.setWidget(self.card)
        card_scroll.setWidgetResizable(True)
        card_scroll.setFrameShape(QFrame.Shape.NoFrame)
        card_scroll.setMinimumHeight(200)
        card_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        ml.addWidget(card_scroll, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(import_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        ml.addLayout(buttons)
        hint = QLabel("An imported model is checked against its card and SHA-256 before it is installed.")
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        ml.addWidget(hint)

        # --- heatmap defaults
        self.heat_visible = QCheckBox("Show the heatmap when a result appears")
        self.heat_visible.setChecked(self._prefs.heatmap_visible)
        self.heat_opacity = QSlider(Qt.Orientation.Horizontal)
        self.heat_opacity.setRange(0, 100)
        self.heat_opacity.setValue(round(self._prefs.heatmap_opacity * 100))
        opacity_value = QLabel(f"{self.heat_opacity.value()} %")
        self.heat_opacity.valueChanged.connect(lambda v: opacity_value.setText(f"{v} %"))
        heat_box = QGroupBox("Heatmap defaults")
        hl = QFormLayout(heat_box)
        hl.addRow(self.heat_visible)
        op = QHBoxLayout()
        op.addWidget(self.heat_opacity, 1)
        op.addWidget(opacity_value)
        hl.addRow("Opacity", op)

        # --- data and batch
        from app.core.paths import default_data_dir

        self.data_dir = QLineEdit(self._prefs.data_dir or "")
        self.data_dir.setPlaceholderText(str(default_data_dir()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_data)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 64)
        self.batch_size.setValue(self._prefs.batch_size)
        data_box = QGroupBox("Data")
        dl = QFormLayout(data_box)
        folder = QHBoxLayout()
        folder.addWidget(self.data_dir, 1)
        folder.addWidget(browse)
        dl.addRow("Data folder", folder)
        note = QLabel("History, local labelled set and imported models are kept here. Leave empty for the "
                      "default. Existing data is not moved.")
        note.setObjectName("hint")
        note.setWordWrap(True)
        dl.addRow(note)
        dl.addRow("Batch size", self.batch_size)

        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(model_box, 1)
        lay.addWidget(heat_box)
        lay.addWidget(data_box)
        lay.addWidget(box)

        self.models.currentItemChanged.connect(self._show_card)
        self._fill_models(select=self._prefs.model_id)

    # ---- models
    def _fill_models(self, select: str | None = None) -> None:
        self.models.clear()
        try:
            installed = self.store.list()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.notifier.task_failed("Listing the installed models", exc)
            installed = []
        for m in installed:
            item = QListWidgetItem(m.display_name)
            item.setData(Qt.ItemDataRole.UserRole, m)
            self.models.addItem(item)
            if m.id == select:
                self.models.setCurrentItem(item)
        if self.models.currentItem() is None and self.models.count():
            self.models.setCurrentRow(0)

    def _show_card(self, item: QListWidgetItem | None, _prev=None) -> None:
        m = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        self.card.setText(card_summary(m.card) if m is not None else "No model installed.")
        self.remove_button.setEnabled(m is not None and not m.bundled)

    def _import_dialog(self) -> None:
        path = dialogs.folder(self, "Choose a FedXray model folder (with card.json)")
        if path:
            self.import_model(path)

    def import_model(self, path: str | Path) -> None:
        """Verify and install a model in a worker; it is selected when done."""
        self.notifier.info(f"Checking and importing the model in {path}…")
        self.runner.start(f"Importing the model {Path(path).name}", self.store.import_model, Path(path),
                          on_result=self._imported)

    def _imported(self, model) -> None:
        self._fill_models(select=model.id)
        self.notifier.info(f"Model {model.card.name} {model.card.version} imported and checked.")

    def _remove(self) -> None:
        item = self.models.currentItem()
        m = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if m is None or m.bundled:
            return
        try:
            self.store.remove(m.id)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.notifier.task_failed("Removing the model", exc)
        self._fill_models(select=self._prefs.model_id)

    def _browse_data(self) -> None:
        path = dialogs.folder(self, "Data folder", self.data_dir.text())
        if path:
            self.data_dir.setText(path)

    # ---- result
    def preferences(self):
        """The edited preferences (a copy; the caller saves it)."""
        p = self._prefs
        item = self.models.currentItem()
        if item is not None:
            p.model_id = item.data(Qt.ItemDataRole.UserRole).id
        p.heatmap_visible = self.heat_visible.isChecked()
        p.heatmap_opacity = self.heat_opacity.value() / 100.0
        p.data_dir = self.data_dir.text().strip() or None
        p.batch_size = self.batch_size.value()
        return p
