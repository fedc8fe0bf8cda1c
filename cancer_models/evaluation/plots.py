"""Evaluation plots: ROC, precision-recall, confusion matrix, reliability, score distribution, history."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
import numpy as np
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay


def write_plots(
    folder: Path,
    y_true: Sequence[int],
    p_malignant: Sequence[float],
    threshold: float,
    labels: Sequence[str],
    history: list[dict] | None = None,
) -> list[Path]:
    """Write the plots as PNG files into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    y, p = np.asarray(y_true), np.asarray(p_malignant)
    figures = {}
    if len(np.unique(y)) == 2:
        figures["roc.png"] = _roc(y, p)
        figures["precision_recall.png"] = _precision_recall(y, p)
    figures["confusion_matrix.png"] = _confusion_matrix(y, p, threshold, labels)
    figures["reliability.png"] = _reliability(y, p)
    figures["distribution.png"] = _distribution(y, p, threshold, labels)
    if history:
        figures["history.png"] = _history(history)
    for name, fig in figures.items():
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
    return [folder / name for name in figures]


def _roc(y: np.ndarray, p: np.ndarray) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    RocCurveDisplay.from_predictions(y, p, ax=ax, name="model", plot_chance_level=True)
    ax.set_title("ROC curve")
    return fig


def _precision_recall(y: np.ndarray, p: np.ndarray) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    PrecisionRecallDisplay.from_predictions(y, p, ax=ax, name="model", plot_chance_level=True)
    ax.set_title("Precision-recall (malignant)")
    return fig


def _confusion_matrix(y: np.ndarray, p: np.ndarray, threshold: float, labels: Sequence[str]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(
        y, (p >= threshold).astype(int), labels=[0, 1], display_labels=list(labels), ax=ax, colorbar=False
    )
    ax.set_title(f"Confusion matrix (threshold {threshold:.2f})")
    return fig


def _reliability(y: np.ndarray, p: np.ndarray) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    CalibrationDisplay.from_predictions(y, p, n_bins=10, ax=ax, name="model")
    ax.set_title("Reliability (malignant probability)")
    return fig


def _distribution(y: np.ndarray, p: np.ndarray, threshold: float, labels: Sequence[str]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.linspace(0, 1, 26)
    for target, name in enumerate(labels):
        ax.hist(p[y == target], bins=bins, alpha=0.6, label=f"{name} (n={(y == target).sum()})")
    ax.axvline(threshold, color="k", linestyle="--", label="threshold")
    ax.set_xlabel(f"P({labels[1]})")
    ax.set_ylabel("images")
    ax.legend()
    return fig


def _history(history: list[dict]) -> plt.Figure:
    epochs = [row["epoch"] for row in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.2))
    ax1.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax1.plot(epochs, [r["val_loss"] for r in history], label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(epochs, [r["val_auc"] for r in history])
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation AUC")
    return fig
