"""Tests for fl.cohorts: the adult non-COVID specificity and the paediatric 3-class accuracy, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fl.classes import CLASSES
from fl.cohorts import cohort_figures, cohort_of, format_cohorts

COVID, NORMAL, BACT, VIRAL = (CLASSES.index(c) for c in ("Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral"))
ADULT = "adult/mixed (case reports)"
CHILD = "pediatric (Guangzhou Women and Children's Medical Center)"


def one_hot_probs(rows: list[dict[int, float]]) -> np.ndarray:
    p = np.zeros((len(rows), len(CLASSES)))
    for i, row in enumerate(rows):
        for c, v in row.items():
            p[i, c] = v
    return p


def test_cohort_of_manifest_populations():
    assert cohort_of(ADULT) == "adult"
    assert cohort_of(CHILD) == "paediatric"
    assert cohort_of("Paediatric ward") == "paediatric"
    assert cohort_of("") == "" and cohort_of("unknown") == ""


def test_figures_on_hand_made_predictions():
    y = [COVID, NORMAL, BACT, VIRAL, BACT,  # adult: one COVID-19, four not
         NORMAL, BACT, VIRAL, NORMAL,  # paediatric
         NORMAL]  # no population: in neither cohort
    p = one_hot_probs([
        {COVID: 0.9, NORMAL: 0.1},  # adult COVID-19: not counted in the specificity
        {COVID: 0.6, NORMAL: 0.4},  # adult Normal called COVID-19: a miss
        {BACT: 0.7, COVID: 0.3},  # adult bacterial called bacterial: counted
        {NORMAL: 0.5, VIRAL: 0.4, COVID: 0.1},  # adult viral called Normal: wrong class, but not COVID-19
        {COVID: 0.8, BACT: 0.2},  # adult bacterial called COVID-19: a miss
        {COVID: 0.5, NORMAL: 0.3, BACT: 0.2},  # paediatric Normal; COVID-19 left out: Normal -> right
        {COVID: 0.4, VIRAL: 0.35, BACT: 0.25},  # paediatric bacterial; without COVID-19: viral -> wrong
        {VIRAL: 0.9, NORMAL: 0.1},  # right
        {BACT: 0.6, NORMAL: 0.4},  # wrong
        {COVID: 1.0},  # outside both cohorts
    ])
    populations = [ADULT] * 5 + [CHILD] * 4 + [""]
    m = cohort_figures(np.asarray(y), p, populations)
    # Adult non-COVID: 4 images, 2 called COVID-19 -> specificity 2 / 4.
    assert m["adult_non_covid_n"] == 4 and m["adult_non_covid_specificity"] == pytest.approx(0.5)
    # Paediatric: 4 images, right on the 1st and 3rd -> 2 / 4.
    assert m["paediatric_n"] == 4 and m["paediatric_3class_accuracy"] == pytest.approx(0.5)
    text = format_cohorts(m)
    assert "Adult non-COVID specificity (share not called COVID-19): 0.500 (4 images)" in text
    assert "Paediatric 3-class accuracy (COVID-19 left out): 0.500 (4 images)" in text


def test_missing_cohorts_are_none_and_said_so():
    m = cohort_figures(np.array([COVID, NORMAL]), one_hot_probs([{COVID: 1.0}, {NORMAL: 1.0}]), ["", ""])
    assert m == {"adult_non_covid_specificity": None, "adult_non_covid_n": 0,
                 "paediatric_3class_accuracy": None, "paediatric_n": 0}
    assert "n/a (no adult non-COVID image)" in format_cohorts(m)
    assert "n/a (no paediatric image)" in format_cohorts(m)


def test_a_source_detector_scores_zero_specificity():
    # Everything from the case-report source called COVID-19, everything paediatric called right.
    y = np.array([COVID, NORMAL, BACT, NORMAL, BACT])
    p = one_hot_probs([{COVID: 1.0}, {COVID: 1.0}, {COVID: 1.0}, {NORMAL: 1.0}, {BACT: 1.0}])
    m = cohort_figures(y, p, [ADULT, ADULT, ADULT, CHILD, CHILD])
    assert m["adult_non_covid_specificity"] == 0.0 and m["paediatric_3class_accuracy"] == 1.0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="must match"):
        cohort_figures(np.array([0, 1]), one_hot_probs([{0: 1.0}, {1: 1.0}]), [ADULT])
