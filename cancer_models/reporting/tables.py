"""Markdown tables of recorded figures (metrics with intervals, cross-validation, comparisons, shifts, subtypes),
shared by model cards, evaluation reports and the command line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..record import TrainingRecord

# Metrics shown in the card, in this order, with their display names.
CARD_METRICS = {
    "auc": "ROC AUC",
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity (recall, malignant)",
    "specificity": "Specificity",
    "precision": "Precision (PPV)",
    "f1": "F1",
    "ece": "Expected calibration error",
    "sensitivity_at_90_specificity": "Sensitivity at 90% specificity (best threshold)",
    "specificity_at_90_sensitivity": "Specificity at 90% sensitivity (best threshold)",
}


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _with_interval(value: float | None, bounds: list[float] | None) -> str:
    """``0.912 [0.880, 0.940]``; ``n/a`` for a figure a split cannot give."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else "")


def metrics_table(metrics: dict[str, Any]) -> str:
    rows = ["| metric | value | 95% CI |", "|---|---|---|"]
    for key, name in CARD_METRICS.items():
        if key in metrics and metrics[key] is not None:
            ci = metrics.get(f"{key}_ci")
            ci_text = f"{ci[0]:.3f} – {ci[1]:.3f}" if ci else ""
            rows.append(f"| {name} | {_fmt(metrics[key])} | {ci_text} |")
    boot = metrics.get("bootstrap")
    if boot:
        note = f"Intervals: 95% bootstrap over {boot['resamples']} resamples of {boot['unit']}s"
        if boot.get("exact_binomial_for"):
            note += (
                f"; for {', '.join(boot['exact_binomial_for'])} every resample agreed, so the interval is the exact "
                f"(Clopper-Pearson) binomial one over {boot['unit']}s"
            )
        if boot.get("no_interval_for"):
            note += (
                f"; none for {', '.join(boot['no_interval_for'])}: a single {boot['unit']} holds a class, and "
                "resampling one patient or source image says nothing about others"
            )
        rows.append(f"\n{note}.")
    return "\n".join(rows)


def cross_validation_table(cv: dict[str, Any], test_auc: float | None) -> str:
    """Per fold: held-out images and AUC; then the members' test AUCs against the ensemble's."""
    rows = ["| fold | held-out images | AUC |", "|---|---|---|"]
    rows += [f"| {f['fold']} | {f['n']} | {_fmt(f['auc'])} |" for f in cv["per_fold"]]
    rows.append(f"| mean ± sd | | {cv['auc_mean']:.3f} ± {cv['auc_sd']:.3f} |")
    members = ", ".join(f"{a:.3f}" for a in cv["member_test_auc"])
    ensemble = f"; the ensemble: {test_auc:.3f}" if test_auc is not None else ""
    rows.append(f"\nTest AUC of each fold's model alone: {members}{ensemble}.")
    return "\n".join(rows)


def cross_validation_summary(name: str, training: TrainingRecord) -> dict[str, Any]:
    """One cross-validated run's out-of-fold figures (no test figures), from its ``config.training``: a row of
    ``recipe_selection_table``."""
    if not training.cross_validation:
        raise ValueError(f"{name} is not a cross-validated run (train.py --folds)")
    cv, oof = training.cross_validation, training.metrics["out_of_fold"]
    keys = ("n", "auc", "auc_ci", "sensitivity", "sensitivity_ci", "specificity", "specificity_ci")
    return {
        "run": name,
        # what was chosen between: train.py's options, and the hardware (GPU and CPU runs of one recipe differ)
        "options": {**_shown_settings(training.settings), "hardware": _short_hardware(training)},
        "folds_auc": [cv["auc_mean"], cv["auc_sd"]],
        **{k: oof[k] for k in keys},
        "maps": cv.get("out_of_fold_explanations"),
    }


def _shown_settings(settings: dict[str, Any]) -> dict[str, str]:
    """The recorded training settings as a table shows them, by option name (``input_size`` -> ``input-size``):
    lists joined by spaces, switches as yes / no."""

    def shown(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, (list, tuple)):
            return " ".join(map(str, value))
        return "-" if value is None else str(value)

    return {key.replace("_", "-"): shown(value) for key, value in settings.items()}


def _short_hardware(training: TrainingRecord) -> str:
    hardware = training.provenance.hardware
    return hardware.kind if hardware else "?"


def recipe_selection_table(rows: list[dict[str, Any]]) -> str:
    """Cross-validated runs side by side, out of fold, best AUC first: the options that differ between them, the
    folds' AUC, out-of-fold AUC, sensitivity and specificity, and how often the maps peak inside the lesion."""
    not_recipe = {"output-dir", "resume", "fold", "data", "masks"}
    differ = sorted(
        k for k in {k for r in rows for k in r["options"]} - not_recipe if len({r["options"].get(k) for r in rows}) > 1
    )

    head = ["run", *differ, "folds' AUC", "out-of-fold AUC", "sensitivity", "specificity", "map peak in lesion", "heat"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: -r["auc"]):
        maps = r["maps"]
        cells = [r["run"], *(r["options"].get(k, "-") for k in differ)]
        cells += [f"{r['folds_auc'][0]:.3f} ± {r['folds_auc'][1]:.3f}", _with_interval(r["auc"], r["auc_ci"])]
        cells += [
            _with_interval(r["sensitivity"], r["sensitivity_ci"]),
            _with_interval(r["specificity"], r["specificity_ci"]),
        ]
        cells += (
            [
                _with_interval(maps["peak_in_lesion"]["mean"], maps["peak_in_lesion"]["ci"]),
                f"{maps['heat_in_lesion']['mean']:.3f}",
            ]
            if maps
            else ["n/a", "n/a"]
        )
        lines.append("| " + " | ".join(cells) + " |")
    n = ", ".join(str(n) for n in sorted({r["n"] for r in rows}))
    lines.append(
        f"\nOut of fold on {n} images (train + validation); sensitivity and specificity at each run's out-of-fold "
        "threshold; 95% intervals: bootstrap over groups (maps: over images). No test figures: the test split judges "
        "the chosen recipe once."
    )
    return "\n".join(lines)


def out_of_fold_maps(maps: dict[str, Any]) -> str:
    """One sentence on the out-of-fold explanation measure (``cross_validation.out_of_fold_explanations``)."""
    peak, heat = maps["peak_in_lesion"], maps["heat_in_lesion"]
    return (
        f"Out of fold, each fold's model's map ({maps['method']} on {', '.join(maps['layers']) or 'its default'}) "
        f"on the {maps['n']} held-out images with a lesion mask: peak inside the lesion {peak['mean']:.1%} "
        f"[{peak['ci'][0]:.1%}, {peak['ci'][1]:.1%}], heat inside it {heat['mean']:.3f} (lesions cover "
        f"{maps['lesion_share']:.0%} of an image; a fixed spot at the centre peaks inside "
        f"{maps['centre_prior_peak_in_lesion']:.0%})."
    )


def comparison_table(report: dict[str, Any]) -> str:
    """``compare``'s report as markdown: each model's metrics with intervals and its paired AUC difference, then
    the same per collection where the images hold several."""

    trained_on = [row["model"] for row in report["models"] if row.get("includes_training_images")]
    warning = [f"WARNING: includes images that {', '.join(trained_on)} trained on.", ""] if trained_on else []
    lines = [
        *warning,
        (
            f"Data: `{report['data']}`, split `{report['split']}`, {report['n']} images. 95% intervals: bootstrap "
            "over groups; the AUC difference is paired (both models on the same resamples)."
        ),
        "",
        "| model | AUC | sensitivity | specificity | threshold | AUC - first model | p |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["models"]:
        lines.append(f"| {row['model']} | {_scores(row)} | {row['threshold']:.3f} | {_versus_first(row)} |")
    if report.get("per_collection"):
        lines += ["", "Per collection:", ""]
        lines += ["| collection | images | model | AUC | sensitivity | specificity | AUC - first model | p |"]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for name, part in report["per_collection"].items():
            for row in part["models"]:
                lines.append(f"| {name} | {part['n']} | {row['model']} | {_scores(row)} | {_versus_first(row)} |")
    return "\n".join(lines)


def _scores(row: dict[str, Any]) -> str:
    """AUC, sensitivity and specificity with their intervals, as three table cells."""
    return " | ".join(_with_interval(row[k], row[f"{k}_ci"]) for k in ("auc", "sensitivity", "specificity"))


def _versus_first(row: dict[str, Any]) -> str:
    """The paired AUC difference to the first model and its p-value, as two table cells (empty for the first)."""
    versus = row.get("auc_vs_first")
    if not versus:
        return " | "
    if versus["ci"] is None:
        return f"{versus['difference']:+.3f} (one patient or source image holds a class: no interval) | n/a"
    low, high = versus["ci"]
    return f"{versus['difference']:+.3f} [{low:+.3f}, {high:+.3f}] | {versus['p_value']:.3f}"


def shift_table(robustness: dict[str, Any]) -> str:
    """AUC, sensitivity and specificity (at the model's threshold) under each acquisition shift."""
    rows = ["| shift | AUC | sensitivity | specificity |", "|---|---|---|---|"]
    for name, m in robustness["shifts"].items():
        ci = m.get("auc_ci") or [m["auc"], m["auc"]]
        rows.append(
            f"| {name} | {m['auc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | {m['sensitivity']:.3f} | {m['specificity']:.3f} |"
        )
    rows.append(f"\n{robustness['note']}")
    return "\n".join(rows)


def subtype_table(subtypes: dict[str, dict[str, Any]], labels: Sequence[str]) -> str:
    """Per category: images, class, and the share classified right (sensitivity or specificity) with its interval."""
    rows = ["| category | class | images | right at the threshold | 95% CI |", "|---|---|---|---|---|"]
    for name, s in subtypes.items():
        few = " (too few images to say)" if s["too_few"] else ""
        rows.append(
            f"| {name} | {labels[s['label']]} | {s['n']} | {s['metric']} {s['value']:.3f}{few} | "
            f"{s['ci'][0]:.3f} – {s['ci'][1]:.3f} |"
        )
    rows.append("\nIntervals: exact binomial over images.")
    return "\n".join(rows)


def subtype_pair_table(pairs: dict[str, dict[str, Any]]) -> str:
    """Each malignant category against each benign one (e.g. melanoma vs nevus): images, AUC, and sensitivity
    and specificity at the model's threshold."""
    rows = ["| categories | images | AUC | sensitivity | specificity |", "|---|---|---|---|---|"]
    for name, m in pairs.items():
        cells = [name, f"{m['n_malignant']} + {m['n_benign']}", _with_interval(m["auc"], m["auc_ci"])]
        cells += [
            _with_interval(m["sensitivity"], m["sensitivity_ci"]),
            _with_interval(m["specificity"], m["specificity_ci"]),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    rows.append("\nCategories with at least 20 images each; 95% intervals: bootstrap over groups.")
    return "\n".join(rows)


def left_out_row(run: str, training: TrainingRecord) -> dict[str, Any]:
    """One run trained with ``--leave-out``: what it left out and how it did there (``cancer-models sources``)."""
    left = training.metrics["left_out"]
    trust = (training.trust or {}).get("left_out", {})
    row = {"run": run, "collections": left.get("collections", []), **_left_out_cells(left, trust)}
    row["pairs"] = {name: m["auc"] for name, m in (left.get("subtype_pairs") or {}).items()}
    # A run that left out several collections (a lab's colon and lung tiles): each apart, where recorded, since
    # one may be an organ the model never saw and the other the same tissue from another lab.
    trusted = trust.get("per_collection", {})
    row["per_collection"] = {
        name: _left_out_cells(m, trusted.get(name, {})) for name, m in (left.get("per_collection") or {}).items()
    }
    return row


def _left_out_cells(metrics: dict[str, Any], trust: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "auc", "auc_ci", "sensitivity", "sensitivity_ci", "specificity", "specificity_ci")
    return {
        **{k: metrics.get(k) for k in (*keys, "sensitivity_at_90_specificity")},
        "refused": trust.get("rejected"),
        "coverage": trust.get("coverage"),
    }


def left_out_table(rows: list[dict[str, Any]]) -> str:
    """Runs trained without a collection, scored on it: the figures a clinic or lab the model never saw can
    expect."""

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    head = ["left out", "images", "AUC", "sensitivity", "specificity", "sens. at 90% spec.", "refused", "coverage"]
    by_category = any(r.get("pairs") for r in rows)
    head += ["AUC by categories"] if by_category else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(name: str, r: dict[str, Any]) -> list[str]:
        return [
            name,
            str(r["n"]),
            _with_interval(r["auc"], r["auc_ci"]),
            _with_interval(r["sensitivity"], r["sensitivity_ci"]),
            _with_interval(r["specificity"], r["specificity_ci"]),
            _fmt(r["sensitivity_at_90_specificity"]),
            share(r["refused"]),
            share(r["coverage"]),
        ]

    for r in rows:
        row = cells(", ".join(r["collections"]), r)
        if by_category:
            row.append("; ".join(f"{name} {_fmt(auc)}" for name, auc in (r.get("pairs") or {}).items()) or "n/a")
        lines.append("| " + " | ".join(row) + " |")
        for name, part in (r.get("per_collection") or {}).items():
            lines.append("| " + " | ".join([*cells(f"of which {name}", part), *([""] if by_category else [])]) + " |")
    lines.append(
        "\nEach row: a model trained with the same recipe on every other collection, scored on every image of the one "
        "it never saw, at its own threshold; 95% intervals: bootstrap over groups. Refused: the share its rejection "
        "check refused (the figures score every image); coverage: of the prediction sets, on the images it answered."
        + (
            " AUC by categories: each malignant category against each benign one, where both hold 20 images or more."
            if by_category
            else ""
        )
    )
    return "\n".join(lines)
