"""The plain words of the federation screens (app/ui/federation_text.py), from app.core's own status objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.core.enrollment import EnrollmentStatus
from app.core.federation_status import AgentStatus
from app.ui import federation_text as ft

ENROLLED = EnrollmentStatus(enrolled=True, site="Hospital A", node_id=7)
NOT_ENROLLED = EnrollmentStatus(enrolled=False)


@pytest.mark.parametrize(("enrollment", "agent", "text", "level"), [
    (NOT_ENROLLED, AgentStatus(), "Federation: not enrolled", "off"),
    (ENROLLED, AgentStatus(), "Federation: enrolled, not taking part", "off"),
    (ENROLLED, AgentStatus(opted_in=True), "Federation: agent not running", "warn"),
    (ENROLLED, AgentStatus(running=True, opted_in=True, phase="waiting"), "Federation: idle, waiting for the central",
     "idle"),
    (ENROLLED, AgentStatus(running=True, opted_in=True, phase="training", round=2, num_rounds=5, epoch=1, epochs=2,
                           batch=10, batches=40), "Federation: training, round 2 of 5 · epoch 1/2 · 25 %", "busy"),
    (ENROLLED, AgentStatus(running=True, opted_in=True, phase="receiving", round=3), "Federation: receiving the "
     "model, round 3", "busy"),
    (ENROLLED, AgentStatus(running=True, opted_in=True, phase="reconnecting"), "Federation: reconnecting to the "
     "central…", "warn"),
    (ENROLLED, AgentStatus(running=True, opted_in=True, phase="paused"), "Federation: outside training hours", "idle"),
    (ENROLLED, AgentStatus(running=True, opted_in=True, phase="error", error="The clock is 10 minutes ahead.",
                           error_kind="clock"), "Federation: this computer's clock is out of step", "error"),
])  # fmt: skip
def test_indicator_line(enrollment, agent, text, level):
    assert ft.indicator(enrollment, agent) == (text, level)


def test_times_and_durations_in_plain_words():
    now = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    local = (now - timedelta(minutes=3)).astimezone()
    assert ft.ago((now - timedelta(minutes=3)).isoformat(), now) == f"{local:%H:%M} (3 min ago)"
    assert ft.ago((now - timedelta(seconds=20)).isoformat(), now).endswith("(just now)")
    assert ft.ago(None) == "never"
    assert [ft.duration(s) for s in (None, 0.2, 40, 600, 4800, 6000)] == ["—", "about 1 s", "about 40 s", "about 10 min",
                                                                     "about 80 min", "about 1 h 40 min"]  # fmt: skip
    assert ft.short_run(18310009046524626521) == "…626521" and ft.short_run(None) == "—"
    assert ft.round_text(AgentStatus(round=1, num_rounds=1)) == "Round 1 of 1"
