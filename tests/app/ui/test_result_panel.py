"""The result panel says how sure a result is: explanation warning, near tie, the model's main limitation and the
heatmap's numeric colour scale (real widgets offscreen, the bundled model on real images)."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.assessment import EXPLANATION_THRESHOLD
from app.ui.document import CaseDocument, Result
from app.ui.result_panel import ResultPanel
from fl.classes import CLASSES
from tests.app.ui.helpers import wait_idle, wait_result

EDGE = "Covid/cohen_p205_covid-19-pneumonia-progression-and-regression-day20.png"
CLEAN = "Pneumonia-Bacterial/kermany_train_person1201_bacteria_3151.png"


@pytest.fixture(scope="module")
def bundled_service():
    from app.core.inference import InferenceService
    from tests.conftest import REPO

    svc = InferenceService(engine="litert")
    svc.load(REPO / "resources" / "models" / "default")
    return svc


def test_a_result_whose_heatmap_sits_on_the_edge_carries_the_explanation_warning(qtbot, make_window,
                                                                                  bundled_service, shared_data):
    w = make_window(service=bundled_service)
    panel = w.case_page.result
    w.open_image(shared_data / "cxr" / EDGE)
    assert wait_result(qtbot, w) == "result"
    a = w.document.result.assessment
    assert a.explanation_warning and a.attention["off_target"] > EXPLANATION_THRESHOLD
    assert panel.cautions.isVisible() and "edge of the image" in panel.cautions.text()
    assert not panel.outside_use.isVisible()
    # The model card's main limitation sits next to the model name.
    assert panel.limitation.isVisible() and "recognises the image source" in panel.limitation.text()
    wait_idle(qtbot, w)
    case = w.history.get(w.document.result.case_id)
    assert case.assessment.explanation_warning                      # and the history keeps it
    from app.ui.history_view import CAUTIONS_COLUMN

    w.history_view.refresh()
    m = w.history_view.model
    assert "explanation" in m.data(m.index(0, CAUTIONS_COLUMN))

    w.open_image(shared_data / "cxr" / CLEAN)
    assert wait_result(qtbot, w) == "result"
    assert not w.document.result.assessment.explanation_warning and not panel.cautions.isVisible()


def test_near_tie_is_shown_as_uncertain_not_as_one_finding(qtbot):
    doc = CaseDocument()
    panel = ResultPanel(doc)
    qtbot.addWidget(panel)
    panel.show()
    p = np.array([0.46, 0.05, 0.47, 0.02])
    doc.set_result(Result(probabilities=p, predicted=int(np.argmax(p)), model_name="m", model_version="1"))
    assert panel.finding.text() == "Uncertain: bacterial pneumonia or COVID-19"
    assert panel.finding_caption.text().startswith("UNCERTAIN")
    assert panel.finding_prob.text() == "47.0 / 46.0 %"
    assert "Near tie" in panel.cautions.text()
    clear = np.array([0.1, 0.1, 0.7, 0.1])
    doc.set_result(Result(probabilities=clear, predicted=2, model_name="m", model_version="1"))
    assert panel.finding.text() == "Bacterial pneumonia" and not panel.cautions.isVisible()


def test_outside_the_intended_use_is_marked_on_the_result(qtbot):
    doc = CaseDocument()
    panel = ResultPanel(doc)
    qtbot.addWidget(panel)
    panel.show()
    p = np.array([0.9, 0.05, 0.03, 0.02])
    doc.set_result(Result(probabilities=p, predicted=0, model_name="m", model_version="1",
                          guardrails=("The DICOM modality is CT.",)))
    assert panel.outside_use.isVisible() and "OUTSIDE THE INTENDED USE" in panel.outside_use.text()


def test_legend_has_numbers_and_the_same_colour_map(qtbot):
    from fl.gradcam import LEGEND_TICKS

    doc = CaseDocument()
    panel = ResultPanel(doc)
    qtbot.addWidget(panel)
    assert [t.text() for t in panel.legend.ticks] == [f"{t:g}" for t in LEGEND_TICKS] == ["0", "0.25", "0.5",
                                                                                         "0.75", "1"]
    assert CLASSES  # the panel lists every class
