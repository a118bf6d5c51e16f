"""The explanation warning, the near-tie rule and the outside-intended-use mark (app.core.assessment)."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.assessment import (
    EXPLANATION_THRESHOLD,
    NEAR_TIE_MARGIN,
    assess,
    assess_prediction,
)
from app.core.guardrails import Warning
from fl.classes import CLASSES

ON_THE_EDGE = "Covid/cohen_p205_covid-19-pneumonia-progression-and-regression-day20.png"  # map on the bottom edge
CENTRAL = "Pneumonia-Bacterial/kermany_train_person1201_bacteria_3151.png"  # map on the lungs


def _probs(**by_name):
    return [by_name.get(c, 0.0) for c in CLASSES]


def test_near_tie_is_shown_as_uncertain_between_the_two():
    a = assess(_probs(**{"Pneumonia-Bacterial": 0.47, "Covid": 0.46, "Normal": 0.07}))
    assert a.near_tie and a.margin == pytest.approx(0.01)
    assert a.finding == "uncertain: bacterial pneumonia or COVID-19"
    assert [c for c, _ in a.cautions] == ["near_tie"]


def test_margin_at_the_limit_is_not_a_tie():
    top = 0.5 + NEAR_TIE_MARGIN / 2 + 0.001
    a = assess(_probs(Normal=top, **{"Pneumonia-Viral": 1 - top}))
    assert a.margin >= NEAR_TIE_MARGIN and not a.near_tie and a.finding == "Normal"
    b = assess({"Covid": 0.1, "Normal": 0.3 - NEAR_TIE_MARGIN + 0.01, "Pneumonia-Bacterial": 0.3,
                "Pneumonia-Viral": 0.0})
    assert b.near_tie and b.predicted == "Pneumonia-Bacterial" and b.runner_up == "Normal"


def test_explanation_warning_above_the_threshold_only():
    p = _probs(Covid=0.9, Normal=0.1)
    assert assess(p, attention={"border": 0.6, "outside_body": 0.1, "off_target": EXPLANATION_THRESHOLD + 0.01}
                  ).explanation_warning
    assert not assess(p, attention={"border": 0.2, "outside_body": 0.1, "off_target": EXPLANATION_THRESHOLD}
                      ).explanation_warning
    assert not assess(p).explanation_warning  # no heatmap, no claim


def test_guardrail_warnings_mark_the_result_outside_the_intended_use():
    a = assess(_probs(Covid=0.99, Normal=0.01), guardrails=[Warning("colour", "This is a colour image.")])
    assert a.outside_intended_use and a.cautions[0][0] == "outside_intended_use"
    assert a.as_json()["outside_intended_use"] is True


@pytest.fixture(scope="module")
def classifier():
    from fl.inference import Classifier
    from tests.conftest import REPO

    return Classifier(REPO / "resources" / "models" / "default", engine="litert")


def test_real_model_map_on_the_image_edge_warns_and_a_central_one_does_not(classifier, shared_data):
    edge = assess_prediction(classifier.classify(shared_data / "cxr" / ON_THE_EDGE))
    central = assess_prediction(classifier.classify(shared_data / "cxr" / CENTRAL))
    assert edge.explanation_warning and edge.attention["off_target"] > EXPLANATION_THRESHOLD
    assert "edge of the image" in dict(edge.cautions)["explanation"]
    assert not central.explanation_warning and central.attention["off_target"] < 0.4


def test_a_map_of_another_class_is_not_judged_as_the_result(classifier, shared_data):
    pred = classifier.classify(shared_data / "cxr" / CENTRAL)
    other = classifier.classify(pred.radiograph, class_index=(pred.predicted + 1) % len(CLASSES))
    assert assess_prediction(other).attention is None
    assert np.isclose(assess_prediction(pred).margin, np.sort(pred.probabilities)[-1] - np.sort(pred.probabilities)[-2])


def test_synthetic_maps_on_a_real_film_with_a_burnt_in_label(shared_data):
    """A map on the film's own "MOBILE AP ERECT" label (top left) warns; a map on the lungs does not."""
    from fl.attention import attention_shares
    from fl.preprocess import read_image

    px = read_image(shared_data / "cxr" / ON_THE_EDGE).pixels
    h, w = px.shape
    yy, xx = np.mgrid[0:h, 0:w]

    def blob(cy, cx, s):
        return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * s**2))

    p = _probs(Covid=0.9, Normal=0.1)
    on_label = assess(p, attention=attention_shares(px, blob(0.1 * h, 0.2 * w, 0.06 * w)))
    on_lungs = assess(p, attention=attention_shares(px, blob(0.5 * h, 0.5 * w, 0.15 * w)))
    assert on_label.explanation_warning and not on_lungs.explanation_warning
