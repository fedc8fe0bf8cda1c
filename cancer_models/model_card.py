"""Model cards (the ``README.md`` of a model folder): ``huggingface_hub``'s ModelCard, filled from the config alone."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .config import COLOUR_CONSTANCY, ModelConfig

RESEARCH_WARNING = (
    "**Research software, not a medical device.** This model has not been clinically validated and must not "
    "be used to diagnose, treat or triage patients. Its outputs are not medical advice."
)

# Metrics shown in the card, in this order, with their display names.
CARD_METRICS = {
    "auc": "ROC AUC",
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity (recall, malignant)",
    "specificity": "Specificity",
    "precision": "Precision (PPV)",
    "f1": "F1",
    "ece": "Expected calibration error",
}
# Test metrics that become the card's model-index results, with the Hub's metric type.
_HUB_METRICS = {"auc": "roc_auc", "accuracy": "accuracy", "sensitivity": "recall", "f1": "f1"}
_SPLIT_ORDER = {"train": 0, "train + validation": 0, "validation": 1, "out_of_fold": 1, "test": 2}
_SPLIT_TITLES = {"out_of_fold": "Metrics on the out-of-fold predictions (cross-validation over train + validation)"}

TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

> {{ warning }}

## Model

{{ facts }}
{%- if data_names %}

## Training data

{{ data_names }}
{%- if splits_table %}

{{ splits_table }}
{%- endif %}
{%- endif %}
{%- for heading, table in metrics %}

## {{ heading }}

{{ table }}
{%- endfor %}
{%- if scope %}

## Scope: what the model refuses, and how sure it is

{{ scope }}
{%- endif %}
{%- if recipe %}

## Training procedure

{{ recipe }}
{%- endif %}

## Use

```python
from cancer_models import load_pretrained, Predictor

model = load_pretrained("PATH_OR_REPO_ID")
predictor = Predictor(model)
print(predictor.predict("image.jpg"))
explanation = predictor.explain("image.jpg", method="gradcam")
```

## Intended use and limitations

{{ warning }} It was trained on a public research data set whose images come from few institutions and \
scanners; performance on other populations, stains, devices or magnifications is unknown. Grad-CAM maps show \
which regions influenced the score, not where a lesion is.

"""  # (jinja drops one trailing newline)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


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


def cross_validation_summary(name: str, training: dict[str, Any]) -> dict[str, Any]:
    """One cross-validated run's out-of-fold figures (no test figures), from its ``config.training``: a row of
    ``recipe_selection_table``."""
    if "cross_validation" not in training:
        raise ValueError(f"{name} is not a cross-validated run (train.py --folds)")
    cv, oof = training["cross_validation"], training["metrics"]["out_of_fold"]
    keys = ("n", "auc", "auc_ci", "sensitivity", "sensitivity_ci", "specificity", "specificity_ci")
    return {
        "run": name,
        # what was chosen between: train.py's options, and the hardware (GPU and CPU runs of one recipe differ)
        "options": {**_train_options(training.get("command", "")), "hardware": _short_hardware(training)},
        "folds_auc": [cv["auc_mean"], cv["auc_sd"]],
        **{k: oof[k] for k in keys},
        "maps": cv.get("out_of_fold_explanations"),
    }


def _train_options(command: str) -> dict[str, str]:
    """train.py's options as written in its recorded command (a flag without a value maps to "")."""
    options: dict[str, str] = {}
    key = None
    for word in shlex.split(command)[1:]:
        if word.startswith("--"):
            key = word[2:]
            options[key] = ""
        elif key is not None:
            options[key] = f"{options[key]} {word}".strip()
    return options


def _short_hardware(training: dict[str, Any]) -> str:
    hardware = (training.get("provenance") or {}).get("hardware", "")
    return "GPU" if " x " in hardware else "CPU" if "CPU" in hardware else "?"


def recipe_selection_table(rows: list[dict[str, Any]]) -> str:
    """Cross-validated runs side by side, out of fold, best AUC first: the options that differ between them, the
    folds' AUC, out-of-fold AUC, sensitivity and specificity, and how often the maps peak inside the lesion."""
    not_recipe = {"output-dir", "resume", "fold", "data", "masks"}
    differ = sorted(
        k for k in {k for r in rows for k in r["options"]} - not_recipe if len({r["options"].get(k) for r in rows}) > 1
    )

    def ci(value: float, bounds: list[float]) -> str:
        return f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]"

    head = ["run", *differ, "folds' AUC", "out-of-fold AUC", "sensitivity", "specificity", "map peak in lesion", "heat"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: -r["auc"]):
        maps = r["maps"]
        cells = [r["run"], *(r["options"].get(k, "-") for k in differ)]
        cells += [f"{r['folds_auc'][0]:.3f} ± {r['folds_auc'][1]:.3f}", ci(r["auc"], r["auc_ci"])]
        cells += [ci(r["sensitivity"], r["sensitivity_ci"]), ci(r["specificity"], r["specificity_ci"])]
        cells += (
            [ci(maps["peak_in_lesion"]["mean"], maps["peak_in_lesion"]["ci"]), f"{maps['heat_in_lesion']['mean']:.3f}"]
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
    """``compare``'s report as markdown: each model's metrics with intervals and its paired AUC difference."""

    def with_ci(value: float | None, ci: list[float] | None) -> str:
        if value is None:
            return "n/a"
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"

    lines = [
        (
            f"Data: `{report['data']}`, split `{report['split']}`, {report['n']} images. 95% intervals: bootstrap "
            "over groups; the AUC difference is paired (both models on the same resamples)."
        ),
        "",
        "| model | AUC | sensitivity | specificity | threshold | AUC - first model | p |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["models"]:
        versus = row.get("auc_vs_first")
        difference, p_value = "", ""
        if versus:
            difference = f"{versus['difference']:+.3f} [{versus['ci'][0]:+.3f}, {versus['ci'][1]:+.3f}]"
            p_value = f"{versus['p_value']:.3f}"
        lines.append(
            f"| {row['model']} | {with_ci(row['auc'], row['auc_ci'])} | "
            f"{with_ci(row['sensitivity'], row['sensitivity_ci'])} | "
            f"{with_ci(row['specificity'], row['specificity_ci'])} | {row['threshold']:.3f} | {difference} | {p_value} |"
        )
    return "\n".join(lines)


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


def is_hub_dataset_id(source: str) -> bool:
    """'name' or 'owner/name' that is not a local folder."""
    looks_like_id = source.count("/") <= 1 and not source.startswith((".", "/", "~")) and "\\" not in source
    return bool(source) and looks_like_id and not Path(source).exists()


def dataset_name(source: str) -> str:
    """What a data source is called in a card: a Hub id as is, a local folder by its name (never its path)."""
    return source if is_hub_dataset_id(source) else Path(source).name


def _data_names(training: dict[str, Any]) -> list[str]:
    return [dataset_name(s) for s in str(training.get("data", "")).split(", ") if s]


def _card_data(config: ModelConfig, title: str, base: ModelCardData | None) -> ModelCardData:
    training = config.training
    hub_ids = training.get("hub_datasets") or []
    test = (training.get("metrics") or {}).get("test") or {}
    results = [
        EvalResult(
            task_type="image-classification",
            dataset_type=hub_ids[0] if len(hub_ids) == 1 else "imagefolder",
            dataset_name=training.get("task") or ", ".join(_data_names(training)) or "custom",
            dataset_split="test",
            metric_type=hub_type,
            metric_value=round(test[key], 4),
        )
        for key, hub_type in _HUB_METRICS.items()
        if test.get(key) is not None
    ]
    data = ModelCardData(**(base.to_dict() if base else {}))
    data.license = training.get("license") or data.license
    data.datasets = hub_ids or None
    data.base_model = training.get("base_model")
    data.tags = sorted({*(data.tags or []), "image-classification", "medical-imaging", "grad-cam", config.architecture})
    data.model_name = title if results else None
    data.eval_results = results or None
    return data


def _facts(config: ModelConfig) -> str:
    colour = COLOUR_CONSTANCY[config.colour_constancy]
    args = f" {json.dumps(config.model_args)}" if config.model_args else ""
    facts = [
        f"- Architecture: `{config.architecture}`{args}",
        f"- Classes: `{config.labels[0]}` (0), `{config.labels[1]}` (1)",
        (
            f"- Input: RGB, resized to {config.input_size}x{config.input_size}, "
            f"{colour + ', ' if colour else ''}"
            f"normalised with mean {list(config.mean)} and std {list(config.std)}"
        ),
        (
            f"- Decision threshold on the malignant probability: {config.threshold:.3f}; "
            f"calibration temperature: {config.temperature:.3f}"
        ),
    ]
    if config.training.get("task"):
        facts.append(f"- Task: {config.training['task']}")
    provenance = config.training.get("provenance")
    if provenance:
        facts.append("- Trained with: " + ", ".join(f"{k} {v}" for k, v in provenance.items()))
    return "\n".join(facts)


def _splits_table(config: ModelConfig) -> str:
    splits, counts = config.training.get("splits"), config.training.get("class_counts", {})
    if not splits:
        return ""
    rows = [
        f"| {name} | {n} | " + " | ".join(str(c) for c in counts.get(name, ["", ""])) + " |"
        for name, n in sorted(splits.items(), key=lambda kv: _SPLIT_ORDER.get(kv[0], 9))
    ]
    return "\n".join([f"| split | images | {config.labels[0]} | {config.labels[1]} |", "|---|---|---|---|", *rows])


def explanation_reliability(explanations: dict[str, Any] | None, method: str | None = None) -> str:
    """One sentence on how far to trust the model's CAM map, from ``config.training['explanations']``; with
    ``method`` (the one shown), a note when that is not the measured one."""
    if not explanations:
        return "How often this map points at the lesion has not been measured (no lesion masks for this model)."
    peak, heat = explanations["peak_in_lesion"], explanations["heat_in_lesion"]
    measured = explanations["method"]
    text = (
        f"On {explanations['n']} test images with known lesions ({explanations['data']}), this model's default map "
        f"({measured}) peaked inside the lesion {peak['mean']:.0%} of the time (95% CI "
        f"{peak['ci'][0]:.0%}-{peak['ci'][1]:.0%}) and put {heat['mean']:.0%} of its heat there, where lesions "
        f"cover {explanations['lesion_share']:.0%} of an image on average; a fixed spot at the image centre peaked "
        f"inside {explanations['centre_prior_peak_in_lesion']:.0%} of the time."
    )
    if method and method != measured:
        text += f" This map uses {method}, which was not measured."
    return text


def _scope(config: ModelConfig) -> str:
    trust, task = config.training.get("trust"), config.training.get("task") or "its training"
    if not (trust and config.ood and config.conformal):
        return ""
    calibrated_on = trust.get("calibrated_on", "validation")
    held_out = "validation" if calibrated_on == "validation" else "out-of-fold"
    lines = [
        (
            f"- Made for {task} images like those of its training data. An image whose mid-level features"
            + (", or whose colour, brightness and texture statistics," if "image_threshold" in config.ood else "")
            + " lie further from the training images than "
            + (
                f"every image of {config.ood['acceptance']:.0%} of the {held_out} groups (near-copies of one "
                "source image count once; each layer and the statistics against their own limits)"
                if config.ood.get("over") == "groups"
                else f"those of {config.ood['acceptance']:.0%} of the {held_out} images"
            )
            + " (Mahalanobis distances) gets no verdict: *not recognised*. Other imaging modalities, photographs "
            "and drawings are out of scope."
        ),
    ]
    if config.ood.get("refused"):
        *others, last = sorted(config.ood["refused"])
        sets = f"{', '.join(others)} and {last}" if others else last
        lines[0] += f" Its limit was also set below every validation image of {sets}, which it must not accept."
    subtypes = config.training.get("subtypes")
    if subtypes:
        seen = ", ".join(f"{name} ({config.labels[int(n[1] > n[0])]}, {sum(n)})" for name, n in subtypes.items())
        lines.append(
            f"- Categories in its training split (the data's subtype column, with image counts): {seen}. Other "
            "categories of the same modality (other lesion types, tissues or tumours) were not in its training "
            "data and its behaviour on them has not been measured."
        )
    for split in ("validation", "test"):
        if split in trust:
            t = trust[split]
            lines.append(f"- {split.capitalize()} images rejected: {t['rejected']:.1%} (n = {t['n']})")
    explanations = config.training.get("explanations")
    if explanations:
        lines.append(f"- {explanation_reliability(explanations)}")
        choice = config.training.get("cam_choice")
        if choice:
            lines.append(
                f"- The default map ({explanations['method']} on layer(s) {', '.join(explanations['layers'])}) was "
                f"chosen among {len(choice)} layer and method pairs on the validation images with lesion masks, "
                f"where it peaked inside the lesion {choice[0]['peak_in_lesion']:.0%} of the time."
            )
        # What was tried to make the map point at the lesion, in the trainer's words (config.training).
        lines.extend(f"- Tried: {note}" for note in explanations.get("tried", []))
    test = trust.get("test", {})
    if "coverage" in test:
        lines.append(f"- {_sets_sentence(config, test, calibrated_on)}")
    if trust.get("foreign"):
        lines.append(f"- {_foreign_sentence(trust['foreign'])}")
    return "\n".join(lines)


def _foreign_sentence(foreign: dict[str, Any]) -> str:
    accepted = sorted(foreign["accepted"].items())
    shown = "; ".join(f"{name} {share:.1%} (n = {foreign['n'][name]})" for name, share in accepted)
    return (
        "Images of other kinds that it accepted (a development set built from images that ship in Python packages, "
        f"never used to set a limit): {shown}."
    )


def _sets_sentence(config: ModelConfig, test: dict[str, Any], calibrated_on: str) -> str:
    level = 1 - config.conformal["alpha"]
    if "empty" in test:  # sets fitted before they always held the decided class
        return (
            f"Prediction sets at {level:.0%} (split-conformal, calibrated on {calibrated_on}): they held the true "
            f"class of {test['coverage']:.1%} of the accepted test images; one class {test['singleton']:.1%}, both "
            f"classes (*uncertain*) {test['both']:.1%}, none {test['empty']:.1%}."
        )
    text = (
        f"Prediction sets at {level:.0%} (split-conformal, calibrated on {calibrated_on}; each set holds the "
        "decided class and the other one while it stays plausible, and *uncertain* means both): they held the true "
        f"class of {test['coverage']:.1%} of the accepted test images, *uncertain* {test['both']:.1%}, and "
        f"*uncertain* for {test['uncertain_when_confident']:.1%} of the answers whose top probability was 0.95 or more"
    )
    if "tta_coverage" in test:
        text += (
            f"; with test-time augmentation (sets calibrated with it) coverage {test['tta_coverage']:.1%}, "
            f"*uncertain* {test['tta_both']:.1%}"
        )
    return text + (
        ". The level is the first of 90%, 95%, 98% and 99% that the model's sets do not exceed by more than 2 points "
        "on the calibration images."
    )


def build_model_card(config: ModelConfig, base: ModelCardData | None = None) -> ModelCard:
    """The card for a model with this config; ``base`` holds metadata every card shares (library, tags)."""
    training = config.training
    task = f" for {training['task']}" if training.get("task") else ""
    architecture = config.architecture
    if architecture == "ensemble":
        architecture = f"{config.model_args.get('members')} x {config.model_args.get('member')} ensemble"
    title = training.get("name") or f"{architecture} benign-vs-malignant classifier{task}"
    metrics = [
        (
            _SPLIT_TITLES.get(split, f"Metrics on the {split} split") + (f" (n = {m['n']})" if m.get("n") else ""),
            metrics_table(m),
        )
        for split, m in sorted((training.get("metrics") or {}).items(), key=lambda kv: -_SPLIT_ORDER.get(kv[0], 9))
    ]
    if training.get("cross_validation"):
        test_auc = (training.get("metrics") or {}).get("test", {}).get("auc")
        table = cross_validation_table(training["cross_validation"], test_auc)
        storage = training.get("storage")
        if storage:
            table += (
                f" Weights are stored as {storage['weights']}: that moved a test probability by at most "
                f"{storage['largest_test_probability_change']:.4f} (test AUC in float32: "
                f"{_fmt(storage['test_auc_in_float32'])})."
            )
        maps = training["cross_validation"].get("out_of_fold_explanations")
        if maps:
            table += "\n\n" + out_of_fold_maps(maps)
        metrics.append(("Cross-validation", table))
    if training.get("robustness"):
        split = training["robustness"].get("split", "test")
        metrics.append((f"Under acquisition shifts ({split} split)", shift_table(training["robustness"])))
    test_subtypes = (training.get("metrics") or {}).get("test", {}).get("subtypes")
    if test_subtypes:
        metrics.append(("Per category on the test split", subtype_table(test_subtypes, config.labels)))
    if training.get("recipe_selection"):
        table = recipe_selection_table(training["recipe_selection"])
        metrics.append(("How the recipe was chosen (cross-validation, same folds)", table))
    if training.get("comparison"):
        metrics.append(("Compared with other models (same images)", comparison_table(training["comparison"])))
    return ModelCard.from_template(
        _card_data(config, title, base),
        template_str=TEMPLATE,
        title=title,
        warning=RESEARCH_WARNING,
        facts=_facts(config),
        data_names=", ".join(_data_names(training)),
        splits_table=_splits_table(config),
        metrics=metrics,
        scope=_scope(config),
        recipe=training.get("recipe"),
    )
