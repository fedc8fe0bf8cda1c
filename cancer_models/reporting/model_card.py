"""Model cards (the ``README.md`` of a model folder): ``huggingface_hub``'s ModelCard, filled from the config alone."""

from __future__ import annotations

import json
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..config import COLOUR_CONSTANCY, ModelConfig
from ..record import TrainingRecord
from ..settings import TrustSettings
from ..sources import display_name
from ..trust.conformal import CONFIDENT
from .datasets import KNOWN_DATASETS, data_license, known
from .tables import (
    _fmt,
    comparison_table,
    cross_validation_table,
    left_out_table,
    metrics_table,
    out_of_fold_maps,
    shift_table,
    subtype_pair_table,
    subtype_table,
)

RESEARCH_WARNING = (
    "**Research software, not a medical device.** This model has not been clinically validated and must not "
    "be used to diagnose, treat or triage patients. Its outputs are not medical advice."
)

# Test metrics that become the card's model-index results, with the Hub's metric type.
_HUB_METRICS = {"auc": "roc_auc", "accuracy": "accuracy", "sensitivity": "recall", "f1": "f1"}
_SPLIT_ORDER = {"train": 0, "train + validation": 0, "validation": 1, "out_of_fold": 1, "left_out": 1.5, "test": 2}
_SPLIT_TITLES = {
    "out_of_fold": "Metrics on the out-of-fold predictions (cross-validation over train + validation)",
    "left_out": "Collections left out of training",
}

# A category whose sensitivity or specificity on the test split is below this is listed as a failure mode, as is
# a test calibration error above POOR_CALIBRATION.
WEAK_CATEGORY = 0.85
POOR_CALIBRATION = 0.05
# A collection left out of training is a failure mode where its AUC is below this, its sensitivity or specificity
# below WEAK_CATEGORY, or more than LEFT_OUT_REFUSED of it refused (the share another clinic's images may lose).
WEAK_LEFT_OUT_AUC = 0.9
LEFT_OUT_REFUSED = 0.1

TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

> {{ warning }}

{{ summary }}

## Model details

{{ facts }}

## Intended use

- **Intended:** research on {{ task }} image classification and its explanations: benchmarking, teaching, \
studying failure modes and explanation quality, as a baseline to improve on.
- **Out of scope:** diagnosis, screening, triage or any decision about a patient; images of other modalities, \
body sites, stains or magnifications than its training data (the model refuses many of them, not all); \
populations and devices unlike those of the training data.

## How to use

```python
from cancer_models import Predictor, load_pretrained

predictor = Predictor(load_pretrained("PATH_OR_REPO_ID"))
prediction = predictor.predict("image.jpg")
print(prediction.decision, prediction.malignant_probability, prediction.prediction_set)
explanation = predictor.explain("image.jpg")  # Grad-CAM heatmap and overlay
```

Or from a shell: `cancer-models predict image.jpg --model PATH_OR_REPO_ID`.
{%- if data_section %}

## Training data

{{ data_section }}
{%- endif %}

## Evaluation
{%- for heading, table in metrics %}

### {{ heading }}

{{ table }}
{%- endfor %}
{%- if scope %}

## Rejection, prediction sets and explanations

{{ scope }}
{%- endif %}

## Known failure modes and limitations

{{ failures }}
{%- if recipe %}

## Training procedure

{{ recipe }}
{%- endif %}

## How to cite

{{ citations }}
"""  # (jinja drops one trailing newline)


def _data_names(training: TrainingRecord) -> list[str]:
    return [display_name(s) for s in training.data]


def _card_data(config: ModelConfig, title: str, base: ModelCardData | None) -> ModelCardData:
    training = config.training
    hub_ids = training.hub_datasets or []
    test = (training.metrics or {}).get("test") or {}
    results = [
        EvalResult(
            task_type="image-classification",
            dataset_type=hub_ids[0] if len(hub_ids) == 1 else "imagefolder",
            dataset_name=training.task or ", ".join(_data_names(training)) or "custom",
            dataset_split="test",
            metric_type=hub_type,
            metric_value=round(test[key], 4),
        )
        for key, hub_type in _HUB_METRICS.items()
        if test.get(key) is not None
    ]
    data = ModelCardData(**(base.to_dict() if base else {}))
    names = _data_names(training)
    # A licence given at training wins; "other" (the default) means none was given: then the public sets'.
    stated = training.license if training.license not in (None, "other") else None
    data.license = stated or data_license(names) or training.license or data.license
    if data.license == "other":
        infos = known(names)
        data.license_name = "research-use" if infos else "see-training-data"
        data.license_link = infos[0].url if len(infos) == 1 else None
    data.datasets = hub_ids or None
    data.base_model = training.base_model
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
    if config.training.task:
        facts.append(f"- Task: {config.training.task}")
    tile = config.tile
    if tile:
        scale = f" at {tile.mpp:.2f} µm per pixel" if tile.mpp else " (microns per pixel unknown)"
        facts.append(
            f"- Large images and slides are cut into tiles of {tile.size} px{scale}, the training tiles' scale"
            + (": a slide that gives its own scale is tiled to match" if tile.mpp else "")
        )
    p = config.training.provenance
    versions = [f"{name} {v}" for name, v in (("cancer-models", p.package_version), ("torch", p.torch),
                                              ("torchvision", p.torchvision)) if v]  # fmt: skip
    if versions or p.hardware:
        trained = ", ".join(versions) + (f" on {p.hardware}" if p.hardware else "")
        commit = f" (commit {p.git_commit[:12]})" if p.git_commit else ""
        facts.append(f"- Trained with: {trained}{commit}" + (f"; {p.note}" if p.note else ""))
    return "\n".join(facts)


def _splits_table(config: ModelConfig) -> str:
    splits, counts = config.training.splits, config.training.class_counts or {}
    if not splits:
        return ""
    rows = [
        f"| {name} | {n} | " + " | ".join(str(c) for c in counts.get(name, ["", ""])) + " |"
        for name, n in sorted(splits.items(), key=lambda kv: _SPLIT_ORDER.get(kv[0], 9))
    ]
    return "\n".join([f"| split | images | {config.labels[0]} | {config.labels[1]} |", "|---|---|---|---|", *rows])


def explanation_reliability(explanations: dict[str, Any] | None, method: str | None = None) -> str:
    """One sentence on how far to trust the model's CAM map, from ``config.training.explanations``; with
    ``method`` (the one shown), a note when that is not the measured one."""
    if not explanations:
        return "How often this map points at the lesion has not been measured (no lesion masks for this model)."
    peak, heat = explanations["peak_in_lesion"], explanations["heat_in_lesion"]
    measured = explanations["method"]
    if explanations.get("region") == "breast":
        text = (
            f"On {explanations['n']} test mammograms ({explanations['data']}), this model's default map ({measured}) "
            f"put {heat['mean']:.0%} of its heat inside the breast (95% CI {heat['ci'][0]:.0%}-{heat['ci'][1]:.0%}), "
            f"which covers {explanations['lesion_share']:.0%} of the image it looks at, and peaked inside it "
            f"{peak['mean']:.0%} of the time. No lesion outlines exist for these images: whether it points at the "
            "cancer itself is not measured."
        )
    else:
        text = (
            f"On {explanations['n']} test images with known lesions ({explanations['data']}), this model's default "
            f"map ({measured}) peaked inside the lesion {peak['mean']:.0%} of the time (95% CI "
            f"{peak['ci'][0]:.0%}-{peak['ci'][1]:.0%}) and put {heat['mean']:.0%} of its heat there, where lesions "
            f"cover {explanations['lesion_share']:.0%} of an image on average; a fixed spot at the image centre "
            f"peaked inside {explanations['centre_prior_peak_in_lesion']:.0%} of the time."
        )
    if method and method != measured:
        text += f" This map uses {method}, which was not measured."
    return text


# How the card names the domain classifier's negatives (``TrustSettings.domain_negatives``).
NEGATIVE_KINDS = {
    "scenes": "generated photograph-like scenes (whole and cropped)",
    "photographs": "photographs (whole and cropped)",  # models calibrated before the scenes were
    "generated": "generated images",
}


def _other_refusals(ood: TrustSettings) -> str:
    """The checks besides the distances, in words: the floors, the domain score, the refused sets."""
    text = ""
    if ood.colour_floor > 0:
        text += (
            " An image with less than half the colour of the least colourful held-out images is refused too: a "
            "grey image (an X-ray, a CT, an ultrasound frame, a grey copy) is never taken for this modality."
        )
    if ood.texture_floor > 0:
        text += (
            " An image with less than half the fine texture of the least textured held-out images is refused"
            " too: a blank or flat image (one colour, a smooth gradient)."
        )
    if ood.layers_over_collections:
        text += (
            f" The feature-layer limits accept each of {_names(ood.layers_over_collections)} as a detector fitted"
            " without it scores it, so that a lab or clinic it never saw is not refused for its stain or camera"
            " alone; other kinds of image are left to the other checks."
        )
    if ood.domain_limit is not None:
        negatives = [f"{n} {NEGATIVE_KINDS.get(kind, kind + ' images')}" for kind, n in ood.domain_negatives.items()]
        taught = f"{', '.join(negatives[:-1])} and {negatives[-1]}" if len(negatives) > 1 else "".join(negatives)
        text += (
            " A linear classifier on the same features and statistics"
            + (f" (taught to tell its training images from {taught})" if taught else "")
            + " refuses images it finds less like its own than its out-of-fold groups at the same level."
        )
    if ood.refused:
        text += (
            f" Its limit was also set below every validation image of {_names(ood.refused)}, which it must not accept."
        )
    return text


def _names(names: list[str]) -> str:
    """'a, b and c'."""
    *others, last = sorted(names)
    return f"{', '.join(others)} and {last}" if others else last


def _scope(config: ModelConfig) -> str:
    trust, task = config.training.trust, config.training.task or "its training"
    if not (trust and config.ood and config.conformal):
        return ""
    calibrated_on = trust.get("calibrated_on", "validation")
    held_out = "validation" if calibrated_on == "validation" and config.ood.domain_limit is None else "out-of-fold"
    lines = [
        (
            f"- Made for {task} images like those of its training data. An image whose mid-level features"
            + (", or whose colour, brightness and texture statistics," if config.ood.image_limit is not None else "")
            + " lie further from the training images than "
            + (
                f"every image of {config.ood.acceptance:.0%} of the {held_out} groups (near-copies of one "
                "source image count once; each layer and the statistics against their own limits)"
                if config.ood.over == "groups"
                else f"those of {config.ood.acceptance:.0%} of the {held_out} images"
            )
            + " (Mahalanobis distances) gets no verdict: *not recognised*. Other imaging modalities, photographs "
            "and drawings are out of scope."
        ),
    ]
    lines[0] += _other_refusals(config.ood)
    subtypes = config.training.subtypes
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
    explanations = config.training.explanations
    if explanations:
        lines.append(f"- {explanation_reliability(explanations)}")
        choice = config.training.evaluations.get("cam_choice")
        if choice:
            lines.append(
                f"- The default map ({explanations['method']} on layer(s) {', '.join(explanations['layers'])}) was "
                f"chosen among {len(choice)} layer and method pairs on the validation images with lesion masks, "
                f"where it peaked inside the lesion {choice[0]['peak_in_lesion']:.0%} of the time."
            )
    test = trust.get("test", {})
    if "coverage" in test:
        lines.append(f"- {_sets_sentence(config, test, calibrated_on)}")
    foreign = _foreign(config)
    if foreign:
        lines.append(f"- {_foreign_sentence(foreign)}")
    return "\n".join(lines)


def _foreign(config: ModelConfig) -> dict[str, Any] | None:
    """What the model accepted of the foreign development set (``benchmarks/rejection.py --record``)."""
    return config.training.evaluations.get("foreign_images") or (config.training.trust or {}).get("foreign")


def _foreign_sentence(foreign: dict[str, Any]) -> str:
    accepted = sorted(foreign["accepted"].items())
    shown = "; ".join(f"{name} {share:.1%} (n = {foreign['n'][name]})" for name, share in accepted)
    return (
        "Images of other kinds that it accepted (a development set built from images that ship in Python packages, "
        f"never used to set a limit): {shown}."
    )


def _sets_sentence(config: ModelConfig, test: dict[str, Any], calibrated_on: str) -> str:
    level = config.conformal.level
    if "empty" in test:  # sets fitted before they always held the decided class
        return (
            f"Prediction sets at {level:.0%} (split-conformal, calibrated on {calibrated_on}): they held the true "
            f"class of {test['coverage']:.1%} of the accepted test images; one class {test['singleton']:.1%}, both "
            f"classes (*uncertain*) {test['both']:.1%}, none {test['empty']:.1%}."
        )
    if config.conformal.collections:
        calibrated_on += f", to hold on each of {', '.join(config.conformal.collections)}, not only on their mix"
    text = (
        f"Prediction sets at {level:.0%} (split-conformal, calibrated on {calibrated_on}; each set holds the "
        "decided class and the other one while it stays plausible, and *uncertain* means both): they held the true "
        f"class of {test['coverage']:.1%} of the accepted test images, *uncertain* {test['both']:.1%}, and "
        f"*uncertain* for {test['uncertain_when_confident']:.1%} of the answers whose top probability was "
        f"{CONFIDENT} or more"
    )
    if "tta_coverage" in test:
        text += (
            f"; with test-time augmentation (sets calibrated with it) coverage {test['tta_coverage']:.1%}, "
            f"*uncertain* {test['tta_both']:.1%}"
        )
    text += (
        ". The level is the first of 90%, 95%, 98% and 99% that the model's sets do not exceed by more than 2 points "
        "on the calibration images."
    )
    per = test.get("per_collection")
    if per:
        shown = "; ".join(
            f"{name} ({c['n']}): refused {c['rejected']:.1%}"
            + (f", coverage {c['coverage']:.1%}" if "coverage" in c else "")
            for name, c in per.items()
        )
        text += f" Per collection of the test split: {shown}."
    return text


def _data_section(config: ModelConfig) -> str:
    names = _data_names(config.training)
    if not names:
        return ""
    lines = [
        f"- `{n}`" + (f": {KNOWN_DATASETS[n].title} ({KNOWN_DATASETS[n].license_text})" if n in KNOWN_DATASETS else "")
        for n in names
    ]
    license = data_license(names)
    if license:
        lines.append(f"\nThe weights carry the most restrictive of these terms: `{license}`.")
    table = _splits_table(config)
    return "\n".join(lines) + (
        f"\n\n{table}\n\nNo split shares a group (near-copies of one source image)." if table else ""
    )


def _left_out_note(metrics: dict[str, Any], trust: dict[str, Any] | None) -> str:
    """What a left-out split is: collections held out of every split, as images from a clinic or lab the model
    never saw, and how many of them its rejection check refused."""
    text = (
        f"Every image of {', '.join(f'`{c}`' for c in metrics.get('collections', []))}, held out of training, "
        "validation and test alike: how the model does on a collection it never saw."
    )
    refused = (trust or {}).get("left_out", {}).get("rejected")
    if refused is not None:
        text += f" The rejection check refused {refused:.1%} of them (the figures below score every image)."
    return text + "\n\n"


def _evaluation(config: ModelConfig) -> list[tuple[str, str]]:
    training = config.training
    metrics = [
        (
            _SPLIT_TITLES.get(split, f"{split.capitalize()} split") + (f" (n = {m['n']})" if m.get("n") else ""),
            _left_out_note(m, training.trust) + metrics_table(m) if split == "left_out" else metrics_table(m),
        )
        for split, m in sorted(training.metrics.items(), key=lambda kv: -_SPLIT_ORDER.get(kv[0], 9))
    ]
    if training.cross_validation:
        test_auc = training.metrics.get("test", {}).get("auc")
        table = cross_validation_table(training.cross_validation, test_auc)
        storage = training.storage
        if storage:
            table += (
                f" Weights are stored as {storage['weights']}: that moved a test probability by at most "
                f"{storage['largest_test_probability_change']:.4f} (test AUC in float32: "
                f"{_fmt(storage['test_auc_in_float32'])})."
            )
        maps = training.cross_validation.get("out_of_fold_explanations")
        if maps:
            table += "\n\n" + out_of_fold_maps(maps)
        metrics.append(("Cross-validation", table))
    for name, m in training.metrics.get("test", {}).get("per_collection", {}).items():
        metrics.append((f"Test split, {name} only (n = {m['n']})", metrics_table(m)))
    test_subtypes = training.metrics.get("test", {}).get("subtypes")
    if test_subtypes:
        metrics.append(("Per category (test split)", subtype_table(test_subtypes, config.labels)))
    test_pairs = training.metrics.get("test", {}).get("subtype_pairs")
    if test_pairs:
        metrics.append(("Malignant against benign categories (test split)", subtype_pair_table(test_pairs)))
    evaluations = training.evaluations
    if evaluations.get("robustness"):
        split = evaluations["robustness"].get("split", "test")
        metrics.append((f"Under acquisition shifts ({split} split)", shift_table(evaluations["robustness"])))
    if evaluations.get("left_out"):
        metrics.append(
            ("Collections left out of training (leave-one-source-out)", left_out_table(evaluations["left_out"]))
        )
    if evaluations.get("comparison"):
        metrics.append(("Compared with other models (same images)", comparison_table(evaluations["comparison"])))
    return metrics


def _summary(config: ModelConfig) -> str:
    test = config.training.metrics.get("test")
    task = config.training.task or "medical"
    text = f"Classifies {task} images as {config.labels[0]} or {config.labels[1]}, with a Grad-CAM map of the evidence"
    if config.ood:
        text += ", a refusal for images unlike its training data"
    if config.conformal:
        text += " and a prediction set that says when both classes stay plausible"
    text += "."
    if test and test.get("auc") is not None:
        ci = test.get("auc_ci")
        interval = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
        text += (
            f" Test ROC AUC {test['auc']:.3f}{interval}, sensitivity {test['sensitivity']:.3f}, specificity "
            f"{test['specificity']:.3f} on {test['n']} held-out images that share no source image with training."
        )
    return text


def _failures(config: ModelConfig) -> str:
    """Known failure modes, read off the recorded figures, then the limits every such model shares."""
    training, lines = config.training, []
    trust = training.trust or {}
    for name, share in sorted((_foreign(config) or {}).get("accepted", {}).items()):
        if share > 0:
            lines.append(f"- Accepts {share:.1%} of the foreign development set's *{name}* as its own kind of image.")
    if trust.get("test", {}).get("rejected"):
        lines.append(f"- Refuses {trust['test']['rejected']:.1%} of its own kind of test images (*not recognised*).")
    for name, s in (training.metrics.get("test", {}).get("subtypes") or {}).items():
        if not s["too_few"] and s["value"] < WEAK_CATEGORY:
            lines.append(f"- {name}: {s['metric']} only {s['value']:.2f} on the test split (n = {s['n']}).")
    for name, m in ((training.evaluations.get("robustness") or {}).get("shifts") or {}).items():
        low = [f"{k} {m[k]:.2f}" for k in ("sensitivity", "specificity") if m.get(k) is not None and m[k] < 0.9]
        if low:
            lines.append(f"- Under {name}: {', '.join(low)}.")
    lines += [line for row in training.evaluations.get("left_out") or [] for line in _left_out_failures(row)]
    ece = training.metrics.get("test", {}).get("ece")
    if ece is not None and ece > POOR_CALIBRATION:
        lines.append(f"- Expected calibration error {ece:.3f} on the test split: read its probabilities as rough.")
    lines += [f"- {caution}" for info in known(_data_names(training)) for caution in info.cautions]
    lines += [
        (
            "- Trained on public research data from few institutions and devices: figures on other populations, "
            "scanners, stains or magnifications are unknown until measured."
        ),
        "- Categories absent from its training data are not covered, even within its modality.",
        "- A Grad-CAM map shows what moved the score, not where a lesion is.",
    ]
    return "\n".join(lines)


def _below(value: float | None, limit: float) -> bool:
    return value is not None and value < limit


def _left_out_failures(row: dict[str, Any]) -> list[str]:
    """Collections the recipe never saw where it ranks poorly, misses cancers, calls benign lesions malignant or
    refuses more than it should: what a clinic or lab not in the training data can expect, said plainly. A run
    that left out several collections is read per collection where recorded (a lab's two organs differ)."""
    lines = []
    for name, cells in (row.get("per_collection") or {", ".join(row["collections"]): row}).items():
        # a figure of 0 is the worst, not a missing one
        weak = [f"AUC {cells['auc']:.2f}"] if _below(cells["auc"], WEAK_LEFT_OUT_AUC) else []
        weak += [f"{k} {cells[k]:.2f}" for k in ("sensitivity", "specificity") if _below(cells[k], WEAK_CATEGORY)]
        weak += [f"{cells['refused']:.0%} refused"] if (cells["refused"] or 0) > LEFT_OUT_REFUSED else []
        if weak:
            lines.append(
                f"- On {name}, left out of training (same recipe): {', '.join(weak)}. Expect this on images "
                "from a clinic or lab it never saw."
            )
    return lines


def _citations(config: ModelConfig) -> str:
    lines = [f"- {info.citation}" for info in known(_data_names(config.training))]
    lines.append(
        "- This software: cancer-models, explainable benign-vs-malignant image classifiers "
        "(research software), version " + (config.training.provenance.package_version or "0.1.0") + "."
    )
    return "Cite the data the model was trained on, and the software:\n\n" + "\n".join(lines)


def build_model_card(config: ModelConfig, base: ModelCardData | None = None) -> ModelCard:
    """The card for a model with this config (and the analyses in ``config.training.evaluations``); ``base`` holds
    metadata every card shares (library, tags)."""
    training = config.training
    task = f" for {training.task}" if training.task else ""
    architecture = config.architecture
    if architecture == "ensemble":
        architecture = f"{config.model_args.get('members')} x {config.model_args.get('member')} ensemble"
    title = training.name or f"{architecture} benign-vs-malignant classifier{task}"
    return ModelCard.from_template(
        _card_data(config, title, base),
        template_str=TEMPLATE,
        title=title,
        warning=RESEARCH_WARNING,
        summary=_summary(config),
        facts=_facts(config),
        task=training.task or "medical",
        data_section=_data_section(config),
        metrics=_evaluation(config) or [("Not evaluated", "This model has no recorded test figures.")],
        scope=_scope(config),
        failures=_failures(config),
        recipe=training.recipe,
        citations=_citations(config),
    )
