"""A run's per-round series for the dashboard's charts (plain data; drawn with uPlot in static/dashboard.js)."""

from __future__ import annotations

from typing import Any

from fl.classes import CLASSES

AUROC_MEAN = "auroc_site_weighted_mean"  # fl.strategy.AUROC_MEAN (not imported: it would load Flower's strategies)
CLASS_LABELS = {"Covid": "COVID-19", "Normal": "Normal", "Pneumonia-Bacterial": "Bacterial pneumonia",
                "Pneumonia-Viral": "Viral pneumonia"}  # fmt: skip


def _get(round_: dict, source: str, *path: str) -> float | None:
    value: Any = round_.get(source) or {}
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _series(rounds: list[dict], label: str, source: str, *path: str) -> dict:
    return {"label": label, "values": [_get(r, source, *path) for r in rounds]}


def chart_data(rounds: list[dict], *, best_round: int | None, num_rounds: int, status: str) -> dict[str, Any]:
    """{"rounds": [1, 2, …], "best_round", "charts": {name: {"title", "y", "series": [{"label", "values"}]}}};
    round 0 (the initial model's test) is left out, series with no value at all are dropped."""
    done = [r for r in rounds if r.get("server_round", 0) > 0]
    charts: dict[str, dict] = {
        "loss": {"title": "Loss", "y": "loss", "series": [
            _series(done, "Training loss", "train_metrics", "train_loss"),
            _series(done, "Validation loss", "evaluate_metrics", "loss"),
            _series(done, "Test loss", "server_metrics", "loss")]},
        "accuracy": {"title": "Accuracy", "y": "fraction", "series": [
            _series(done, "Training accuracy", "train_metrics", "train_accuracy"),
            _series(done, "Validation accuracy", "evaluate_metrics", "accuracy"),
            _series(done, "Test accuracy", "server_metrics", "accuracy")]},
        "macro": {"title": "Macro sensitivity, specificity and F1 (validation)", "y": "fraction", "series": [
            _series(done, "Macro sensitivity", "evaluate_metrics", "macro_sensitivity"),
            _series(done, "Macro specificity", "evaluate_metrics", "macro_specificity"),
            _series(done, "Macro F1", "evaluate_metrics", "macro_f1")]},
        "sensitivity": {"title": "Sensitivity per class (validation)", "y": "fraction", "series": [
            _series(done, CLASS_LABELS.get(c, c), "evaluate_metrics", "per_class", c, "sensitivity") for c in CLASSES]},
        "auroc": {"title": "AUROC (validation: mean of the sites' one-vs-rest AUROC, weighted by examples)",
                  "y": "AUROC", "series": [
            _series(done, "Macro AUROC", "evaluate_metrics", f"macro_{AUROC_MEAN}"),
            *(_series(done, CLASS_LABELS.get(c, c), "evaluate_metrics", "per_class", c, AUROC_MEAN) for c in CLASSES),
            _series(done, "Test macro AUROC", "server_metrics", "macro_auroc")]},
        "sites": {"title": "Sites per round", "y": "sites", "series": [
            {"label": "Sites aggregated", "values": [r.get("num_sites") for r in done]}]},
    }  # fmt: skip
    for chart in charts.values():
        chart["series"] = [s for s in chart["series"] if any(v is not None for v in s["values"])]
    return {"rounds": [r["server_round"] for r in done], "best_round": best_round, "num_rounds": num_rounds,
            "status": status, "charts": charts}  # fmt: skip


def confusion(round_: dict | None) -> dict | None:
    """The pooled validation confusion matrix of a round: {"classes", "rows"} (rows = true class), or None."""
    if not round_:
        return None
    metrics = round_.get("evaluate_metrics") or {}
    matrix = metrics.get("confusion_matrix")
    if not isinstance(matrix, list) or not matrix:
        return None
    classes = metrics.get("classes") or list(CLASSES)
    return {"classes": [CLASS_LABELS.get(c, c) for c in classes], "rows": matrix,
            "total": sum(sum(row) for row in matrix)}  # fmt: skip
