"""Figures on the cohorts that expose a source shortcut: adult case-report images and paediatric images.

In the shared data set every COVID-19 image is an adult case-report image and almost every other image a
paediatric one (SOURCES.md), so a model can reach a high accuracy by telling the sources apart. Two figures
show whether it did:
- adult non-COVID specificity: of the adult images whose label is not COVID-19, the share NOT called COVID-19
  (a source detector calls them all COVID-19: 0);
- paediatric 3-class accuracy: on the paediatric images (none is COVID-19), the accuracy of the most probable
  of Normal, Pneumonia-Bacterial and Pneumonia-Viral (the COVID-19 probability left out): the fairer test of
  the three classes within one source.
The cohort of an image comes from its manifest's `population` column (fl.data.Sample.population).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fl.classes import CLASSES

COVID = CLASSES.index("Covid")
COHORT_KEYS = ("adult_non_covid_specificity", "adult_non_covid_n", "paediatric_3class_accuracy", "paediatric_n")


def cohort_of(population: str) -> str:
    """"adult", "paediatric" or "" (unknown) from a manifest `population` value."""
    p = (population or "").lower()
    if "pediatric" in p or "paediatric" in p:
        return "paediatric"
    if "adult" in p:
        return "adult"
    return ""


def cohort_figures(y_true, probs, populations: Sequence[str]) -> dict:
    """The two cohort figures (None when their cohort has no image) and their image counts, for labels
    `y_true` (N,) class indices, probabilities `probs` (N, C) and each image's manifest `population`."""
    y = np.asarray(y_true, np.int64)
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0] or len(populations) != y.shape[0]:
        raise ValueError(f"got {y.shape[0]} labels, {p.shape[0] if p.ndim else 0} predictions and "
                         f"{len(populations)} populations; they must match")  # fmt: skip
    cohorts = np.asarray([cohort_of(s) for s in populations], dtype=object)
    predicted = p.argmax(axis=1) if len(y) else np.zeros(0, np.int64)

    adult = (cohorts == "adult") & (y != COVID)
    n_adult = int(adult.sum())
    specificity = float(np.mean(predicted[adult] != COVID)) if n_adult else None

    child = cohorts == "paediatric"
    n_child = int(child.sum())
    others = [c for c in range(p.shape[1]) if c != COVID]
    three = np.asarray(others)[p[child][:, others].argmax(axis=1)] if n_child else np.zeros(0, np.int64)
    accuracy = float(np.mean(three == y[child])) if n_child else None
    return {"adult_non_covid_specificity": specificity, "adult_non_covid_n": n_adult,
            "paediatric_3class_accuracy": accuracy, "paediatric_n": n_child}  # fmt: skip


def format_cohorts(m: dict) -> str:
    """Two report lines for the cohort figures in `m` (missing cohorts say so)."""

    def line(label: str, value, n: int, what: str) -> str:
        return f"{label}: n/a (no {what} image)" if value is None else f"{label}: {value:.3f} ({n} images)"

    return "\n".join([
        line("Adult non-COVID specificity (share not called COVID-19)", m.get("adult_non_covid_specificity"),
             m.get("adult_non_covid_n", 0), "adult non-COVID"),
        line("Paediatric 3-class accuracy (COVID-19 left out)", m.get("paediatric_3class_accuracy"),
             m.get("paediatric_n", 0), "paediatric"),
    ])  # fmt: skip
