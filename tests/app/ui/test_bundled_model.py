"""The full bundled default model in the real window: what a fresh workstation gets."""

from __future__ import annotations

import numpy as np
import pytest

from fl.classes import CLASSES
from tests.app.ui.helpers import cli_classify, wait_result


@pytest.fixture(scope="module")
def bundled_dir():
    import resources

    try:
        return resources.default_model_dir()
    except FileNotFoundError as exc:
        pytest.skip(f"the bundled default model is not in this checkout yet: {exc}")


def test_fresh_workstation_uses_the_bundled_model_and_matches_the_cli(qtbot, bundled_dir, cxr, dicom_dir):
    from app.core.inference import InferenceService
    from app.ui.main_window import MainWindow
    from fl.modelfile import read_card

    card = read_card(bundled_dir)
    w = MainWindow(service=InferenceService())
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.model.state in ("ready", "failed"), timeout=300_000)
    assert w.model.state == "ready", w.model.error
    assert w.model_status.text().startswith(f"Ready: {card.name} {card.version}")
    assert w.case_page.result.demo_badge.isVisible() == bool(card.demo)
    files = (cxr["Covid"], dicom_dir / "RG1_UNCR.dcm")
    expected = cli_classify(*files)
    for path in files:
        w.open_image(path)
        assert wait_result(qtbot, w, timeout=120_000) == "result"
        shown = np.array(w.case_page.result.shown_probabilities())
        want = np.array([expected[path.name]["probabilities"][c] for c in CLASSES])
        assert abs(shown.sum() - 1) < 0.002
        np.testing.assert_allclose(shown, want, atol=0.0006)
        assert w.document.result.model_version == card.version == expected[path.name]["model_version"]
    assert {c.model_version for c in w.history.search()} == {card.version}
    w.close()
