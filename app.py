"""Gradio app (a Hugging Face Space): benign vs malignant, how sure, and where the model looked.

    python app.py            # http://127.0.0.1:7860

Models come from the catalog (app_models.json, or the file named by CANCER_MODELS_CATALOG): from the Hub
when it is reachable, otherwise from the bundled folders. Research software, not a medical device.
"""

from __future__ import annotations

import csv
import os
import tempfile
import threading
from pathlib import Path

import gradio as gr
from gradio.components.label import LabelConfidence, LabelData

from cancer_models import CAM_METHODS, ImageError, ModelConfig, Prediction
from cancer_models.model_card import RESEARCH_WARNING, explanation_reliability
from cancer_models.predict import NOT_RECOGNISED, UNCERTAIN
from catalog import LoadedModel, ModelStore, load_catalog

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
MAX_UPLOAD = "20mb"
MAX_BATCH = 64

WARNING_HTML = (
    '<div style="border:2px solid #b91c1c;border-radius:8px;padding:8px 12px;background:#fef2f2;color:#7f1d1d">'
    "<strong>Research software, not a medical device.</strong> Not clinically validated. Do not use it to diagnose, "
    "treat or triage anyone; its outputs are not medical advice.</div>"
)


class VerdictLabel(gr.Label):
    """gr.Label whose headline is the model's decision (benign, malignant, uncertain, not recognised), with
    both class probabilities below it; gr.Label would headline the most probable class instead."""

    def get_block_name(self) -> str:
        return "label"  # reuse the built-in Label frontend

    def postprocess(self, value):
        if isinstance(value, tuple):
            headline, probabilities = value
            ranked = sorted(probabilities.items(), key=lambda kv: -kv[1])
            return LabelData(label=headline, confidences=[LabelConfidence(label=k, confidence=v) for k, v in ranked])
        return super().postprocess(value)


class ImageUpload(gr.Image):
    """gr.Image that hands the uploaded file to our loader untouched.

    gr.Image opens uploads with PIL itself, so a corrupt or empty file would fail inside Gradio with a
    generic error; ``cancer_models.load_image`` explains what is wrong instead (and handles EXIF,
    16-bit, CMYK, ...).
    """

    def get_block_name(self) -> str:
        return "image"  # reuse the built-in Image frontend

    def preprocess(self, payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return payload.path
        return super().preprocess(payload)


store = ModelStore(load_catalog())
# Models load, and grad-cam imports, while the page starts: the first request then finds them ready.
threading.Thread(
    target=store.warm_up, args=(ROOT / "examples" / "histopathology_benign_lungn100.jpg",), daemon=True
).start()


def _model(name: str) -> LoadedModel:
    try:
        return store.get(name)
    except Exception as e:  # a model that cannot be loaded must not take the app down
        raise gr.Error(f"Model '{name}' is unavailable: {e}", print_exception=False) from e


def _without_temp_path(error: Exception, path: str) -> str:
    """Users know their file by its name, not by the server's upload folder."""
    return str(error).replace(str(path), Path(path).name)


def _default_cam_method(name: str) -> str:
    """The CAM method chosen for the model by how often its map points at lesions (its config's default)."""
    try:
        return store.get(name).predictor.config.cam_method
    except Exception:  # an unavailable model says so when it is used; the menu keeps a sensible choice
        return "gradcam"


def describe_model(name: str) -> str:
    """Markdown for the model panel: the model card's facts and where the weights came from."""
    loaded = _model(name)
    config = loaded.predictor.config
    training = config.training
    lines = [
        f"### {name}",
        f"- **Weights from:** {loaded.source}",
        f"- **Architecture:** `{config.architecture}`; input {config.input_size}x{config.input_size} px",
        f"- **Decision threshold:** P({config.labels[1]}) >= {config.threshold:.3f} (chosen on validation data)",
    ]
    if training.get("data"):
        splits = training.get("splits", {})
        lines.append(
            f"- **Training data:** {training.get('task') or training['data']}; "
            + ", ".join(f"{k} {v}" for k, v in splits.items())
        )
    test = (training.get("metrics") or {}).get("test")
    if test:

        def fmt(key: str) -> str:
            ci = test.get(f"{key}_ci")
            value = test.get(key)
            if value is None:
                return f"{key} n/a"
            return f"{key} {value:.3f}" + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else "")

        lines.append(
            f"- **Test split (n = {test['n']}):** "
            + "; ".join(fmt(k) for k in ("auc", "accuracy", "sensitivity", "specificity"))
        )
    else:
        lines.append("- **Test metrics:** none recorded for this model")
    lines.append(
        f"- **Intended use:** research and education on {loaded.entry.modality or 'these'} images. {RESEARCH_WARNING}"
    )
    return "\n".join(lines)


def _verdict_text(prediction: Prediction, config: ModelConfig, modality: str, tta: bool) -> str:
    """The decision in words, the numbers behind it and the model's scope, never contradicting the headline."""
    p, threshold = prediction.malignant_probability, prediction.threshold
    scope = f"This model is for {modality or 'its training'} images only."
    if prediction.decision == NOT_RECOGNISED:
        return (
            f"**Not recognised.** This does not look like a {modality or 'training'} image the model was trained on "
            f"(unusualness {prediction.ood_score:.0f}, above its limit of {config.ood['threshold']:.0f}), so it gives "
            f"no benign or malignant verdict. {scope}"
        )
    numbers = f"P({config.labels[1]}) = {p:.3f}, decision threshold {threshold:.3f}"
    if prediction.prediction_set is not None:
        level = 1 - config.conformal["alpha"]
        shown = " and ".join(prediction.prediction_set) or "neither class"
        numbers += f"; {level:.0%} prediction set: {shown}"
    if prediction.decision == UNCERTAIN:
        head = (
            "**Uncertain.** The model cannot tell benign from malignant here with the confidence it was calibrated for"
        )
    else:
        head = f"**{prediction.decision.capitalize()}** at this model's threshold"
    views = "the image and its mirror image" if config.tta_views == "hflip" else "8 orientations"
    return f"{head} ({numbers}). {f'Test-time augmentation: {views} averaged. ' if tta else ''}{scope}"


def predict(image: str | None, model_name: str, method: str, opacity: float, tta: bool):
    """Classify one image; returns the verdict with both probabilities, the decision in words, the CAM overlay
    (none for an image the model does not recognise) and the model panel."""
    if image is None:
        raise gr.Error("Please upload an image first (drag and drop, paste, or click the box).", print_exception=False)
    loaded = _model(model_name)
    predictor = loaded.predictor
    try:
        prediction = predictor.predict(image, tta=tta)
        overlay = None
        if prediction.in_distribution:
            overlay = predictor.explain(image, method=method, alpha=opacity, label=prediction.label).overlay
    except ImageError as e:
        raise gr.Error(f"This file cannot be analysed: {_without_temp_path(e, image)}", print_exception=False) from e
    text = _verdict_text(prediction, predictor.config, loaded.entry.modality, tta)
    if overlay is not None:
        text += f" The map shows the regions that drove the '{prediction.label}' score ({method}). "
        text += explanation_reliability(predictor.config.training.get("explanations"), method)
    text += " Research use only, not a diagnosis."
    # An image the model does not recognise gets no probabilities either: "benign 100%" would read as a verdict.
    verdict = (prediction.decision, prediction.probabilities if prediction.in_distribution else {})
    return verdict, text, overlay, describe_model(model_name)


def predict_batch(files: list[str] | None, model_name: str, tta: bool):
    """Classify several files; returns a results table and the same table as a CSV file."""
    if not files:
        raise gr.Error("Please add one or more image files.", print_exception=False)
    if len(files) > MAX_BATCH:
        raise gr.Error(f"At most {MAX_BATCH} files per batch (got {len(files)}).", print_exception=False)
    predictor = _model(model_name).predictor
    rows = []
    for f in files:
        path = f if isinstance(f, str) else f.name
        name = Path(path).name
        try:
            p = predictor.predict(path, tta=tta)
            sets = None if p.prediction_set is None else " and ".join(p.prediction_set)
            score = None if p.ood_score is None else round(p.ood_score, 1)
            rows.append([name, p.decision, round(p.malignant_probability, 4), round(p.threshold, 4), sets, score, ""])
        except ImageError as e:
            rows.append([name, "", None, None, None, None, _without_temp_path(e, path)])
    header = ["file", "decision", "p_malignant", "threshold", "prediction_set", "ood_score", "error"]
    out = Path(tempfile.mkdtemp(prefix="cancer-batch-")) / "predictions.csv"
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return {"headers": header, "data": rows}, str(out)


def _example_rows() -> list[list]:
    """Example images paired with a model of their modality, for the models this catalog has."""
    by_modality = {}
    for name, entry in store.entries.items():
        by_modality.setdefault(entry.modality, name)
    rows = []
    for path in sorted(EXAMPLES.glob("*.jpg")):
        modality = path.name.split("_", 1)[0]
        if modality in by_modality:
            rows.append([str(path), by_modality[modality]])
    return rows


def build_demo() -> gr.Blocks:
    names = store.names
    with gr.Blocks(title="Cancer image classifier (research)") as demo:
        gr.HTML(WARNING_HTML)
        gr.Markdown(
            "# Benign or malignant? With an explanation\n"
            "Histopathology tiles, dermoscopy photos, breast ultrasound. Upload an image, pick the model for its "
            "modality, and see the prediction with a Grad-CAM map of where the model looked."
        )
        model = gr.Dropdown(names, value=names[0], label="Model (modality and architecture)")
        with gr.Tab("Single image"):
            with gr.Row():
                with gr.Column():
                    image = ImageUpload(type="filepath", label="Image", sources=["upload", "clipboard"], height=320)
                    with gr.Accordion("Options", open=False):
                        method = gr.Dropdown(
                            list(CAM_METHODS),
                            value="gradcam",
                            label="Explanation method (the model's measured best is preselected)",
                        )
                        opacity = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Overlay opacity")
                        tta = gr.Checkbox(
                            False, label="Test-time augmentation (the orientations the model was trained with)"
                        )
                    submit = gr.Button("Analyse", variant="primary")
                with gr.Column():
                    probabilities = VerdictLabel(
                        label="Verdict, with calibrated probabilities", num_top_classes=2, elem_id="verdict"
                    )
                    decision = gr.Markdown(label="Decision", elem_id="decision")
                    overlay = gr.Image(
                        label="Grad-CAM overlay", type="numpy", height=320, interactive=False, elem_id="overlay"
                    )
            examples = _example_rows()
            if examples:
                gr.Examples(examples, inputs=[image, model], label="Examples (real test images)")
        with gr.Tab("Batch"):
            files = gr.File(file_count="multiple", file_types=["image"], label="Images")
            batch_tta = gr.Checkbox(False, label="Test-time augmentation")
            run_batch = gr.Button("Analyse all", variant="primary")
            table = gr.Dataframe(label="Results", interactive=False)
            csv_file = gr.File(label="Download CSV")
        with gr.Tab("About the model"):
            panel = gr.Markdown(label="Model details", elem_id="model-panel")
        submit.click(
            predict, [image, model, method, opacity, tta], [probabilities, decision, overlay, panel], api_name="predict"
        )
        run_batch.click(predict_batch, [files, model, batch_tta], [table, csv_file], api_name="predict_batch")
        model.change(describe_model, model, panel, api_name=False)
        model.change(_default_cam_method, model, method, api_name=False)
        demo.load(_default_cam_method, model, method, api_name=False)
        demo.load(describe_model, model, panel, api_name=False)
    return demo


demo = build_demo()
demo.queue(default_concurrency_limit=int(os.environ.get("APP_CONCURRENCY", "2")), max_size=64)

if __name__ == "__main__":
    demo.launch(max_file_size=MAX_UPLOAD, allowed_paths=[str(EXAMPLES)], footer_links=["api"])
