"""The workstation's central client (app.core.central_client): the clock from the Date header against Flower's
limits, the readable fingerprint, refusals mapped to typed errors. Against a real central: tests/app/cli/
test_federation.py (enrolment, clock skew under libfaketime, unreachable central, reused token)."""

from __future__ import annotations

import email.utils

import pytest

from app.core import central_client as cc


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def test_clock_offset_from_the_date_header():
    sent, received = 1_800_000_000.2, 1_800_000_000.4  # local times of the request
    # The central's clock reads 1_800_000_060.x while ours reads ~1_800_000_000.3: it is 60 s ahead.
    offset, uncertainty = cc.clock_offset(http_date(1_800_000_060), sent, received)
    assert offset == pytest.approx(60.5 - 0.3, abs=1e-6)  # the header truncates: the midpoint of its second
    assert uncertainty == pytest.approx(0.5 + 0.1)
    assert cc.clock_offset(None, sent, received) is None and cc.clock_offset("garbage", sent, received) is None


@pytest.mark.parametrize("offset,level", [
    (0.0, "ok"), (-2.0, "ok"),  # this clock 2 s ahead: fine
    (-4.0, "warn"),  # 4 s ahead: close to Flower's 5 s
    (-8.0, "fail"),  # 8 s ahead: Flower refuses signatures from the future beyond 5 s
    (200.0, "ok"), (260.0, "warn"),  # behind: Flower accepts up to 305 s
    (320.0, "fail"), (-600.0, "fail"),
])  # fmt: skip
def test_clock_verdict_follows_flowers_window(offset, level):
    assert cc.clock_verdict(offset, 0.5).level == level


def test_clock_limits_are_flowers_own():
    from flwr.common.constant import SYSTEM_TIME_TOLERANCE, TIMESTAMP_TOLERANCE

    assert cc.FLOWER_AHEAD_LIMIT == SYSTEM_TIME_TOLERANCE
    assert cc.FLOWER_BEHIND_LIMIT == TIMESTAMP_TOLERANCE + SYSTEM_TIME_TOLERANCE


def test_clock_messages_say_which_way_and_what_to_do():
    ahead = cc.clock_verdict(-600.0)
    assert "10 minutes ahead" in ahead.message and "automatically" in ahead.message
    behind = cc.clock_verdict(2 * 3600.0)
    assert "2.0 hours behind" in behind.message


def test_readable_fingerprint_groups():
    fp = "0123456789abcdef" * 4
    text = cc.readable_fingerprint(fp)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0] == "0123 4567 89AB CDEF"
    assert cc.normalize_fingerprint(text) == fp  # what IT reads out can be typed back in


def test_plain_http_is_refused_before_any_connection():
    with pytest.raises(cc.EnrollmentError, match="HTTPS"):
        cc.probe("http://127.0.0.1:1")
