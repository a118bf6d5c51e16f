"""The Federation page: enrolment (IT), taking part (staff), the live round, readiness, schedule and limits."""

from __future__ import annotations

import html

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.core.agent_control import WHAT_LEAVES, WHAT_STAYS
from app.ui import federation_text as ft
from app.ui.federation_model import FederationModel
from app.ui.readiness_view import ReadinessView
from app.ui.round_panel import RoundPanel, fill_fields
from app.ui.schedule_editor import ScheduleEditor


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("hint")
    label.setWordWrap(True)
    return label


class EnrolmentBox(QGroupBox):
    """Central, site, node id, enrolled since, last contact, online as the central sees it; Enrol / Leave."""

    enrolRequested = Signal()
    leaveRequested = Signal()

    def __init__(self, model: FederationModel, parent: QWidget | None = None) -> None:
        super().__init__("This workstation's enrolment (IT)", parent)
        self.model = model
        self.state = QLabel()
        self.state.setObjectName("sectionState")
        self.state.setWordWrap(True)
        self.problem = QLabel()
        self.problem.setObjectName("formProblem")
        self.problem.setWordWrap(True)
        self.form = QWidget()
        grid = QGridLayout(self.form)
        grid.setContentsMargins(0, 0, 0, 0)
        self.values = fill_fields(grid, (("central", "Central"), ("site", "Site"), ("node", "Node id"),
                                         ("since", "Enrolled since"), ("contact", "Last contact"),
                                         ("seen", "The central sees it"), ("keyring", "Keys")))  # fmt: skip
        self.enrol = QPushButton("Enrol this workstation…")
        self.enrol.setObjectName("primary")
        self.enrol.clicked.connect(self.enrolRequested)
        self.refresh_button = QPushButton("Ask the central again")
        self.refresh_button.clicked.connect(lambda: model.refresh_enrollment(ask_central=True))
        self.leave = QPushButton("Leave the federation…")
        self.leave.clicked.connect(self.leaveRequested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.enrol)
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        buttons.addWidget(self.leave)
        lay = QVBoxLayout(self)
        lay.addWidget(self.state)
        lay.addWidget(self.form)
        lay.addWidget(self.problem)
        lay.addLayout(buttons)
        model.enrollmentChanged.connect(self.refresh)
        model.busyChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        e, m = self.model.enrollment, self.model
        enrolled = bool(e is not None and e.enrolled)
        self.form.setVisible(enrolled)
        self.enrol.setVisible(e is not None and not enrolled)
        self.enrol.setEnabled(not m.busy)
        self.leave.setVisible(enrolled)
        self.leave.setEnabled(enrolled and not m.busy)
        self.refresh_button.setVisible(enrolled)
        self.refresh_button.setEnabled(not m.refreshing)
        self.refresh_button.setText("Asking the central…" if m.refreshing else "Ask the central again")
        if e is None:
            self.state.setText("Reading the enrolment…")
        elif not enrolled:
            self.state.setText("<b>Not enrolled.</b> IT enrols this workstation once with the central's address "
                               "and a one-time token; staff can then choose to take part.")  # fmt: skip
        else:
            self.state.setText(f"<b>Enrolled</b> with the central of {html.escape(e.site or '?')}.")
        self.problem.setText(e.problem if e is not None and e.problem else "")
        self.problem.setVisible(bool(e is not None and e.problem))
        if not enrolled:
            return
        v = self.values
        v["central"].setText(e.central_url or "—")
        v["central"].setToolTip(f"Flower fleet address {e.superlink_address}" if e.superlink_address else "")
        v["site"].setText(e.site or "—")
        v["node"].setText(f"{e.node_id}" + (f" ({e.hostname})" if e.hostname else ""))
        v["since"].setText(ft.date_only(e.enrolled_at))
        known = e.reachable and e.central_status not in (None, "ended")  # the central answered about this node
        v["contact"].setText(ft.ago(e.last_contact) if known else "—")
        v["seen"].setText(self._seen(e))
        keys = "in the keyring" if e.secrets_present else "MISSING from the keyring" if e.secrets_present is False \
            else "the keyring could not be read"  # fmt: skip
        v["keyring"].setText(f"{keys} ({e.keyring})" if e.keyring else keys)

    @staticmethod
    def _seen(e) -> str:
        if e.reachable is None:
            return "asking…"
        if not e.reachable:
            return "unknown: the central did not answer"
        if e.central_status == "ended":
            return "enrolment ended (revoked, or the workstation left)"
        status = e.central_status or "?"
        return f"{status}, {'online' if e.online else 'offline'}"


class ParticipationBox(QGroupBox):
    """Opt in / opt out, with the plain statement of what leaves this computer and what never does."""

    def __init__(self, model: FederationModel, parent: QWidget | None = None) -> None:
        super().__init__("Taking part in federated training", parent)
        self.model = model
        self.state = QLabel()
        self.state.setObjectName("sectionState")
        self.state.setWordWrap(True)
        leaves = QLabel(f"<b>What leaves this computer:</b> {html.escape(WHAT_LEAVES)}")
        stays = QLabel(f"<b>What never leaves it:</b> {html.escape(WHAT_STAYS)}")
        for label in (leaves, stays):
            label.setWordWrap(True)
            label.setObjectName("privacyStatement")
        self.join = QPushButton("Take part")
        self.join.setObjectName("primary")
        self.join.clicked.connect(model.opt_in)
        self.stop = QPushButton("Stop taking part")
        self.stop.clicked.connect(model.opt_out)
        self.busy = QLabel()
        self.busy.setObjectName("hint")
        buttons = QHBoxLayout()
        buttons.addWidget(self.join)
        buttons.addWidget(self.stop)
        buttons.addWidget(self.busy, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.state)
        lay.addWidget(leaves)
        lay.addWidget(stays)
        lay.addLayout(buttons)
        for sig in (model.agentChanged, model.enrollmentChanged, model.busyChanged):
            sig.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        m = self.model
        a = m.agent
        opted = m.opted_in
        if not m.enrolled:
            text = "This workstation must be enrolled (by IT) before it can take part."
        elif opted:
            text = ("<b>This workstation takes part.</b> A background agent trains on the local labelled images when "
                    "the central asks, inside the training windows; it goes on when FedXray is closed and starts "
                    "again at login.")  # fmt: skip
        else:
            text = ("<b>Not taking part.</b> Taking part trains the shared model on this workstation's labelled "
                    "images; the images themselves stay here.")  # fmt: skip
        self.state.setText(text)
        self.join.setVisible(not opted)
        self.stop.setVisible(opted or bool(a is not None and a.running))
        self.join.setEnabled(m.enrolled and not m.busy and a is not None)
        self.stop.setEnabled(not m.busy)
        self.busy.setText(m.busy)


class FederationPage(QScrollArea):
    """The whole page; ``confirm`` is the question hook (tests replace it)."""

    enrolRequested = Signal()

    def __init__(self, model: FederationModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("federationPage")
        self.model = model
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.enrolment = EnrolmentBox(model)
        self.participation = ParticipationBox(model)
        self.round = RoundPanel(model)
        self.readiness = ReadinessView(model)
        self.schedule = ScheduleEditor(model)
        round_box = QGroupBox("Federated training now")
        QVBoxLayout(round_box).addWidget(self.round)
        ready_box = QGroupBox("Readiness check")
        QVBoxLayout(ready_box).addWidget(self.readiness)
        schedule_box = QGroupBox("When to train, and how much of this computer to use")
        QVBoxLayout(schedule_box).addWidget(self.schedule)

        left = QVBoxLayout()  # for the staff: what it is doing now, taking part, when
        left.addWidget(round_box)
        left.addWidget(self.participation)
        left.addWidget(schedule_box)
        left.addStretch(1)
        right = QVBoxLayout()  # for IT: enrolment and readiness
        right.addWidget(self.enrolment)
        right.addWidget(ready_box)
        right.addStretch(1)
        body = QWidget()
        body.setObjectName("federationBody")
        cols = QHBoxLayout(body)
        cols.setContentsMargins(16, 8, 16, 16)
        cols.setSpacing(16)
        cols.addLayout(left, 1)
        cols.addLayout(right, 1)
        self.setWidget(body)
        self.enrolment.enrolRequested.connect(self.enrolRequested)
        self.enrolment.leaveRequested.connect(self.ask_leave)

    def confirm(self, title: str, text: str) -> bool:
        box = QMessageBox(QMessageBox.Icon.Question, title, text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)  # fmt: skip
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return box.exec() == QMessageBox.StandardButton.Yes

    def ask_leave(self) -> None:
        """Confirm, then leave; if the central cannot be told, offer to remove the keys anyway."""
        e = self.model.enrollment
        if e is None or not e.enrolled:
            return
        text = (f"Leave the federation of {e.site}?\n\nThis workstation stops taking part, the central at "
                f"{e.central_url} unregisters it (node {e.node_id}), and its keys are removed from the keyring. "
                "To take part again, IT must enrol it again with a new token.")  # fmt: skip
        if self.confirm("Leave the federation", text):
            self.model.leave(on_error=self._leave_failed)

    def _leave_failed(self, exc: BaseException) -> None:
        self.model.notifier.task_failed("Leaving the federation", exc)
        if "Nothing was removed" in str(exc):  # the central was not told: offer to leave anyway, once idle again
            QTimer.singleShot(0, lambda: self._offer_force(exc))

    def _offer_force(self, exc: BaseException) -> None:
        e = self.model.enrollment
        node = e.node_id if e is not None else "?"
        text = (f"{exc}\n\nRemove this workstation's keys anyway? The central then still lists node {node}: ask IT "
                f"to revoke it (fedxray-central nodes revoke {node}).")  # fmt: skip
        if self.confirm("Leave without telling the central", text):
            self.model.leave(force=True)
