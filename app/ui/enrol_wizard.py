"""The enrol wizard (for IT): central address → the central's identity and clock → one-time token → result.

Every network call and keyring access runs in a worker; each failure is shown on the step it belongs to, with
what to do.
"""

from __future__ import annotations

import html
import socket

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from app.core import central_client as cc
from app.core.errors import AppError
from app.ui.workers import TaskRunner

# What each failure means, as a title above app.core's message (which already says what to do).
TITLES = (
    ("TokenRefusedError", "The central refused the token"),
    ("FingerprintMismatchError", "The central's identity does not match — do not enrol"),
    ("CentralUnreachableError", "The central cannot be reached"),
    ("NotACentralError", "This address is not a FedXray central"),
    ("KeyringUnavailableError", "The keyring is locked or missing"),
    ("ClockSkewError", "This computer's clock is out of step with the central"),
)
TOKEN_PREFIX = "The central refused the enrolment token: "  # said by the title already


def explain(exc: BaseException) -> tuple[str, str]:
    """(title, what happened and what to do) for a failure of the wizard's steps."""
    name = type(exc).__name__
    title = next((t for n, t in TITLES if n == name), "Enrolment failed")
    text = str(exc).strip() or name
    if name == "TokenRefusedError":
        text = text.removeprefix(TOKEN_PREFIX)
        text = text[:1].upper() + text[1:]
        if "IT" not in text.split():
            text += " If it is refused again, ask IT for a new one-time token."
    elif not isinstance(exc, AppError):
        text = f"{name}: {text}. Nothing was changed; try again, or tell IT what this says."
    return title, text


def error_html(exc: BaseException) -> str:
    title, text = explain(exc)
    return f"<b>{html.escape(title)}.</b><br>{html.escape(text).replace(chr(10), '<br>')}"


def mono(size: float = 0) -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    if size:
        font.setPointSizeF(size)
    return font


def problem_label() -> QLabel:
    label = QLabel()
    label.setObjectName("wizardProblem")
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.hide()
    return label


class AddressPage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Enrol this workstation — 1 of 3: the central")
        self.setSubTitle("IT gives you the central's address and a one-time token, and reads out the central's "
                         "fingerprint by phone (or gives it to you in person).")  # fmt: skip
        self.address = QLineEdit()
        self.address.setPlaceholderText("https://central.hospital.org:8443")
        self.address.textChanged.connect(self.completeChanged)
        self.problem = problem_label()
        steps = QLabel("<p>What you need from IT:</p><ol style='margin-top:0'><li>the central's address (this "
                       "step);</li><li>the central's certificate fingerprint, to compare on the next step;</li>"
                       "<li>a one-time enrolment token (it starts with <tt>fxe1.</tt>).</li></ol>"
                       "<p>This computer's clock must be right to the minute: it is checked on the next step.</p>")
        steps.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("Central address", self.address)
        form.addRow(self.problem)
        form.addRow(steps)
        self.registerField("address*", self.address)

    def validatePage(self) -> bool:
        try:
            self.wizard().url = cc.normalize_central_url(self.address.text())
        except AppError as exc:
            self.problem.setText(error_html(exc))
            self.problem.show()
            return False
        self.problem.hide()
        return True


class CheckPage(QWizardPage):
    """Probes the central in a worker: its CA fingerprint in groups (compared by phone), the clock."""

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Enrol this workstation — 2 of 3: is it really your central?")
        self.probe = None
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumHeight(10)
        self.busy.setTextVisible(False)
        self.fingerprint = QLabel()
        self.fingerprint.setObjectName("fingerprint")
        self.fingerprint.setFont(mono(15))
        self.fingerprint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fingerprint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.compare = QLabel("Ask IT to read out the fingerprint of the central's certificate and compare it "
                              "with these 16 groups, one by one. Continue only if every group matches: otherwise "
                              "someone may be between this computer and the central.")  # fmt: skip
        self.compare.setWordWrap(True)
        self.pasted = QLineEdit()
        self.pasted.setPlaceholderText("or paste the fingerprint IT sent you (SHA-256, 64 hex digits)")
        self.pasted.setFont(mono())
        self.pasted.textChanged.connect(self._pasted)
        self.match = QLabel()
        self.match.setWordWrap(True)
        self.confirmed = QCheckBox("Every group matches the fingerprint IT gave me")
        self.confirmed.toggled.connect(self.completeChanged)
        self.clock = QLabel()
        self.clock.setWordWrap(True)
        self.problem = problem_label()
        self.retry = QPushButton("Try again")
        self.retry.clicked.connect(self.start_probe)
        self.retry.hide()
        lay = QVBoxLayout(self)
        for w in (self.status, self.busy, self.fingerprint, self.compare, self.pasted, self.match, self.confirmed,
                  self.clock, self.problem):  # fmt: skip
            lay.addWidget(w)
        lay.addWidget(self.retry, 0, Qt.AlignmentFlag.AlignLeft)
        lay.addStretch(1)

    def initializePage(self) -> None:
        self.start_probe()

    def start_probe(self) -> None:
        url = self.wizard().url
        self.probe = None
        self.setSubTitle(f"Connecting to {url}…")
        self.status.setText(f"Asking {html.escape(url)} for its certificate and its time…")
        self.busy.show()
        for w in (self.fingerprint, self.compare, self.pasted, self.match, self.confirmed, self.clock, self.problem,
                  self.retry):  # fmt: skip
            w.hide()
        self.confirmed.setChecked(False)
        self.completeChanged.emit()
        self.wizard().runner.start("Connecting to the central", cc.probe, url, on_result=self._probed,
                                   on_error=self._failed)  # fmt: skip

    def _probed(self, probe) -> None:
        self.probe = probe
        self.busy.hide()
        self.setSubTitle(f"{probe.url} answered in {probe.latency * 1000:.0f} ms.")
        self.status.setText("The central's certificate fingerprint (SHA-256):")
        self.fingerprint.setText(probe.fingerprint_groups)
        for w in (self.fingerprint, self.compare, self.pasted, self.confirmed, self.clock):
            w.show()
        c = probe.clock
        if c is None:
            self.clock.setText("<b>Clock:</b> the central did not say its time, so the clock was not checked.")
        else:
            mark = {"ok": "✔", "warn": "!", "fail": "✖"}.get(c.level, "?")
            self.clock.setText(f"<b>{mark} Clock:</b> {html.escape(c.message)}")
        self.clock.setProperty("level", c.level if c is not None else "warn")
        self.clock.style().unpolish(self.clock)
        self.clock.style().polish(self.clock)
        if c is not None and c.level == "fail":
            self.problem.setText(error_html(cc.ClockSkewError(c.message, c.offset)))
            self.problem.show()
            self.retry.show()
        self._pasted()
        self.completeChanged.emit()

    def _failed(self, exc: BaseException) -> None:
        self.busy.hide()
        self.setSubTitle("The central did not answer as expected.")
        self.status.setText("")
        self.problem.setText(error_html(exc))
        self.problem.show()
        self.retry.show()

    def _pasted(self) -> None:
        text = self.pasted.text().strip()
        if not text or self.probe is None:
            self.match.hide()
            return
        try:
            same = cc.normalize_fingerprint(text) == self.probe.ca_fingerprint
        except AppError:
            self.match.setText("That is not a complete SHA-256 fingerprint (64 hex digits).")
            self.match.setProperty("level", "warn")
        else:
            self.match.setText("✔ The pasted fingerprint matches." if same else
                               "✖ The pasted fingerprint does NOT match. Do not enrol, and tell IT.")  # fmt: skip
            self.match.setProperty("level", "ok" if same else "fail")
            self.confirmed.setChecked(same)
            self.confirmed.setEnabled(same)
        self.match.style().unpolish(self.match)
        self.match.style().polish(self.match)
        self.match.show()

    def isComplete(self) -> bool:
        p = self.probe
        clock_ok = p is not None and (p.clock is None or p.clock.level != "fail")
        return clock_ok and self.confirmed.isChecked() and self.confirmed.isEnabled()

    def cleanupPage(self) -> None:
        self.pasted.clear()
        self.confirmed.setEnabled(True)


class TokenPage(QWizardPage):
    """The one-time token; Enrol runs app.core.enrollment.enroll in a worker, the wizard moves on when done."""

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Enrol this workstation — 3 of 3: the one-time token")
        self.setSubTitle("A key pair is made on this computer; the private key goes only into the system keyring. "
                         "The token can be used once.")  # fmt: skip
        self.setCommitPage(True)
        self.setButtonText(QWizard.WizardButton.CommitButton, "Enrol")
        self.token = QLineEdit()
        self.token.setFont(mono())
        self.token.setPlaceholderText("fxe1.…")
        self.token.textChanged.connect(self.completeChanged)
        self.name = QLineEdit(socket.gethostname()[:100])
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumHeight(10)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self.progress = QLabel()
        self.progress.setWordWrap(True)
        self.problem = problem_label()
        form = QFormLayout(self)
        form.addRow("One-time token", self.token)
        form.addRow("This workstation's name", self.name)
        form.addRow(QLabel("The name helps IT recognise this computer in the central's list."))
        form.addRow(self.busy)
        form.addRow(self.progress)
        form.addRow(self.problem)
        self.result = None
        self.running = False

    def isComplete(self) -> bool:
        return bool(self.token.text().strip()) and not self.running

    def validatePage(self) -> bool:
        if self.result is not None:
            return True
        self.start_enrol()
        return False

    def start_enrol(self) -> None:
        from app.core.enrollment import enroll

        wiz = self.wizard()
        self.running = True
        self.completeChanged.emit()
        self.problem.hide()
        self.busy.show()
        for w in (self.token, self.name):
            w.setEnabled(False)
        self.progress.setText("Checking the keyring, making the key pair, registering with the central…")
        wiz.runner.start("Enrolling this workstation", enroll, central_url=wiz.url, token=self.token.text().strip(),
                         ca_fingerprint=wiz.check.probe.ca_fingerprint, hostname=self.name.text().strip() or None,
                         on_result=self._enrolled, on_error=self._failed)  # fmt: skip

    def _enrolled(self, enrollment) -> None:
        self.result = enrollment
        self.running = False
        self.busy.hide()
        self.progress.setText("")
        self.wizard().enrolled.emit(enrollment)
        self.wizard().next()

    def _failed(self, exc: BaseException) -> None:
        self.running = False
        self.busy.hide()
        self.progress.setText("")
        for w in (self.token, self.name):
            w.setEnabled(True)
        self.problem.setText(error_html(exc))
        self.problem.show()
        self.completeChanged.emit()


class DonePage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("This workstation is enrolled")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        QVBoxLayout(self).addWidget(self.summary)

    def initializePage(self) -> None:
        e = self.wizard().token_page.result
        self.setSubTitle(f"Node {e.node_id} of {e.site}")
        self.summary.setText(
            f"<p>Enrolled with the central at <b>{html.escape(e.central_url)}</b> as node <b>{e.node_id}</b> of "
            f"<b>{html.escape(e.site)}</b>.</p>"
            "<p>The private key and the credential are in this computer's keyring; the central's certificate is "
            "pinned for every later connection.</p>"
            "<p><b>Next:</b> the staff of this workstation decide on the Federation page whether it takes part "
            "in federated training, and when.</p>")  # fmt: skip


class EnrolWizard(QWizard):
    """Emits ``enrolled(Enrollment)`` once the central has enrolled this workstation."""

    enrolled = Signal(object)

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None, *, address: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("FedXray — Enrol this workstation")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, True)
        self.runner = runner
        self.url = ""
        self.address_page, self.check, self.token_page, self.done_page = AddressPage(), CheckPage(), TokenPage(), DonePage()
        for page in (self.address_page, self.check, self.token_page, self.done_page):
            self.addPage(page)
        self.address_page.address.setText(address)
        self.resize(700, 520)
