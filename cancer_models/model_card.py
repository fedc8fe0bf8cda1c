"""Model cards (the ``README.md`` of a model folder), rendered from the config alone."""

from __future__ import annotations

import json
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from .config import ModelConfig

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


_SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}

USAGE = """```python
from cancer_models import load_pretrained, Predictor

model = load_pretrained("PATH_OR_REPO_ID")
predictor = Predictor(model)
print(predictor.predict("image.jpg"))
explanation = predictor.explain("image.jpg", method="gradcam")
```"""


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


def _dataset_type(data: str) -> str:
    """A Hub dataset id as is; local folders are 'imagefolder' (their path means nothing elsewhere)."""
    looks_like_hub_id = data and "," not in data and data.count("/") <= 1 and not data.startswith((".", "/", "~"))
    return data if looks_like_hub_id else "imagefolder"


def _front_matter(config: ModelConfig, title: str) -> str:
    """YAML metadata for the Hub, with the test metrics as model-index results."""
    training = config.training
    results = []
    test = (training.get("metrics") or {}).get("test") or {}
    for key, hub_type in (("auc", "roc_auc"), ("accuracy", "accuracy"), ("sensitivity", "recall"), ("f1", "f1")):
        if test.get(key) is not None:
            results.append(
                EvalResult(
                    task_type="image-classification",
                    dataset_type=_dataset_type(training.get("data", "")),
                    dataset_name=training.get("task") or training.get("data", "custom"),
                    dataset_split="test",
                    metric_type=hub_type,
                    metric_value=round(test[key], 4),
                )
            )
    data = ModelCardData(
        library_name="cancer-models",
        pipeline_tag="image-classification",
        license=training.get("license"),
        tags=["image-classification", "medical-imaging", "pytorch", "grad-cam", config.architecture],
        model_name=title if results else None,
        eval_results=results or None,
    )
    return f"---\n{data.to_yaml()}\n---"


def render_model_card(config: ModelConfig, title: str | None = None) -> str:
    training = config.training
    task = f" for {training['task']}" if training.get("task") else ""
    title = title or training.get("name") or f"{config.architecture} benign-vs-malignant classifier{task}"
    facts = [
        f"- Architecture: `{config.architecture}` {json.dumps(config.model_args) if config.model_args else ''}".rstrip(),
        f"- Classes: `{config.labels[0]}` (0), `{config.labels[1]}` (1)",
        (
            f"- Input: RGB, resized to {config.input_size}x{config.input_size}, normalised with mean "
            f"{list(config.mean)} and std {list(config.std)}"
        ),
        (
            f"- Decision threshold on the malignant probability: {config.threshold:.3f}; "
            f"calibration temperature: {config.temperature:.3f}"
        ),
    ]
    if training.get("task"):
        facts.append(f"- Task: {training['task']}")
    parts = [_front_matter(config, title), f"# {title}", "> " + RESEARCH_WARNING, "## Model", "\n".join(facts)]
    if training.get("data"):
        parts += ["## Training data", str(training["data"])]
    if training.get("splits"):
        counts = training.get("class_counts", {})
        rows = [
            f"| {name} | {n} | " + " | ".join(str(c) for c in counts.get(name, ["", ""])) + " |"
            for name, n in sorted(training["splits"].items(), key=lambda kv: _SPLIT_ORDER.get(kv[0], 9))
        ]
        header = f"| split | images | {config.labels[0]} | {config.labels[1]} |"
        parts.append("\n".join([header, "|---|---|---|---|", *rows]))
    for split, metrics in sorted((training.get("metrics") or {}).items(), key=lambda kv: -_SPLIT_ORDER.get(kv[0], 9)):
        n = metrics.get("n")
        parts += [f"## Metrics on the {split} split" + (f" (n = {n})" if n else ""), metrics_table(metrics)]
    if training.get("recipe"):
        parts += ["## Training procedure", str(training["recipe"])]
    parts += [
        "## Use",
        USAGE,
        "## Intended use and limitations",
        RESEARCH_WARNING
        + " It was trained on a public research data set whose images come from few institutions and scanners; "
        "performance on other populations, stains, devices or magnifications is unknown. Grad-CAM maps show which "
        "regions influenced the score, not where a lesion is.",
    ]
    return "\n\n".join(parts) + "\n"
