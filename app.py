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
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.components.label import LabelConfidence, LabelData
from PIL import Image

from cancer_models import CAM_METHODS, ImageError, ModelConfig, Prediction, load_image
from cancer_models.inference.explain import overlay_heatmap
from cancer_models.inference.predict import NOT_RECOGNISED, UNCERTAIN
from cancer_models.inference.routing import Route, route
from cancer_models.inference.slide_outputs import write_outputs
from cancer_models.inference.slides import SlidePredictor
from cancer_models.reporting.model_card import RESEARCH_WARNING, explanation_reliability
from cancer_models.reporting.report import single_image_report
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


INTRO = (
    "# Benign or malignant? With an explanation\n"
    "Histopathology tiles, dermoscopy photos, breast ultrasound. Upload an image: the app chooses the model for its "
    "kind of image (or pick one), answers benign, malignant, *uncertain* (both stay plausible) or *not recognised* "
    "(not an image it was trained on), and shows a Grad-CAM map of where the model looked. Uploads are analysed in "
    "memory and not stored."
)
AUTOMATIC = "Automatic (the model whose kind of image this is)"
BEST_MAP = "model's measured best"
UNCERTAIN_MEANS = (
    "*Uncertain* means that both benign and malignant remain plausible for this image: at its {level:.0%} "
    "confidence level the model cannot rule either out."
)
NOT_RECOGNISED_MEANS = (
    "*Not recognised* means that the image does not look like the {kind} images the model was trained on, so it "
    "gives no verdict."
)

store = ModelStore(load_catalog())
# Models load, and grad-cam imports, while the page starts: the first request then finds them ready.
threading.Thread(
    target=store.warm_up, args=(ROOT / "examples" / "histopathology_benign_lungn100.jpg",), daemon=True
).start()


@dataclass
class Analysis:
    """One image's answer, kept per visitor (Gradio state) so that the map's method and opacity re-render without a
    new prediction, and the report is written from what is on screen."""

    image: Image.Image
    file_name: str
    model: str  # the catalog name of the model that answered
    prediction: Prediction
    tta: bool
    route: Route | None = None  # how the model was chosen, when chosen automatically
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)  # by CAM method


def _model(name: str) -> LoadedModel:
    try:
        return store.get(name)
    except Exception as e:  # a model that cannot be loaded must not take the app down
        raise gr.Error(f"Model '{name}' is unavailable: {e}", print_exception=False) from e


def _without_temp_path(error: Exception, path: str) -> str:
    """Users know their file by its name, not by the server's upload folder."""
    return str(error).replace(str(path), Path(path).name)


def _available() -> dict[str, LoadedModel]:
    """Every model that loads (one that cannot is left out of the automatic choice, not fatal)."""
    loaded = {}
    for name in store.names:
        try:
            loaded[name] = store.get(name)
        except Exception:  # noqa: BLE001 - reported when that model is chosen by hand
            continue
    return loaded


def _kind(name: str) -> str:
    return store.entries[name].modality or "training"


def describe_model(name: str) -> str:
    """Markdown for the model panel: the model card's facts and where the weights came from."""
    if name == AUTOMATIC:
        lines = ["### Automatic choice", "Each image goes to the model whose kind of image it is, by every model's "
                 "own check of whether the image looks like its training images. The models:"]
        lines += [f"- **{n}**: {_kind(n)} images" for n in store.names]
        return "\n".join(lines)
    loaded = _model(name)
    config = loaded.predictor.config
    training = config.training
    lines = [
        f"### {name}",
        f"- **Weights from:** {loaded.source}",
        f"- **Architecture:** `{config.architecture}`; input {config.input_size}x{config.input_size} px",
        f"- **Decision threshold:** P({config.labels[1]}) >= {config.threshold:.3f} (chosen on validation data)",
    ]
    if training.data:
        splits = training.splits or {}
        lines.append(
            f"- **Training data:** {training.task or ', '.join(training.data)}; "
            + ", ".join(f"{k} {v}" for k, v in splits.items())
        )
    lines.append(f"- **Test split:** {_test_figures(config)}")
    lines.append(f"- **Intended use:** research and education on {_kind(name)} images. {RESEARCH_WARNING}")
    return "\n".join(lines)


def _test_figures(config: ModelConfig) -> str:
    test = (config.training.metrics or {}).get("test")
    if not test:
        return "no test metrics recorded for this model"

    def fmt(key: str) -> str:
        ci, value = test.get(f"{key}_ci"), test.get(key)
        if value is None:
            return f"{key} n/a"
        return f"{key} {value:.3f}" + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else "")

    return f"n = {test['n']}; " + "; ".join(fmt(k) for k in ("auc", "accuracy", "sensitivity", "specificity"))


def _level(config: ModelConfig) -> float:
    return 1 - config.conformal["alpha"] if config.conformal else 0.9


def _verdict_text(analysis: Analysis, method: str | None) -> str:
    """The decision in plain words, then the numbers in an expandable section; never contradicting the
    headline (the decision) or the bars (the two probabilities, shown unless the image is refused)."""
    prediction, config = analysis.prediction, _model(analysis.model).predictor.config
    kind = _kind(analysis.model)
    chosen = f"{analysis.route.reason({n: _kind(n) for n in store.names})} " if analysis.route else ""
    if analysis.route is not None and analysis.route.model is None:
        head = f"**Not recognised.** {chosen}"
    elif prediction.refused_because:
        head = f"**Not recognised.** No verdict: {prediction.refused_because}. {chosen}"
    elif prediction.decision == NOT_RECOGNISED:
        head = f"**Not recognised.** {NOT_RECOGNISED_MEANS.format(kind=kind)} {chosen}"
    elif prediction.decision == UNCERTAIN:
        head = f"**Uncertain.** {chosen}{UNCERTAIN_MEANS.format(level=_level(config))}"
    else:
        p = prediction.probabilities[prediction.decision]
        head = f"**{prediction.decision.capitalize()}** ({p:.0%}). {chosen}"
    head = head.strip() + f" This model is for {kind} images only."
    tile = config.tile_size
    if tile and max(analysis.image.size) >= 2.5 * tile and prediction.refused_because is None:
        w, h = analysis.image.size
        head += (
            f" This image is {w}x{h} pixels; the model was trained on tiles of about {tile} pixels and looks at the "
            f"whole image shrunk to {config.input_size}x{config.input_size} as one tile. For a large field or a "
            "slide, use the *Large image / slide* tab, which classifies it tile by tile."
        )
    details = []
    if prediction.in_distribution:
        details.append(
            f"P({config.labels[1]}) = {prediction.malignant_probability:.3f}; the model calls an image "
            f"{config.labels[1]} from {prediction.threshold:.3f} up (a threshold chosen on validation images)."
        )
        if prediction.prediction_set:
            details.append(
                f"Classes that stay plausible at the {_level(config):.0%} level: "
                f"{' and '.join(prediction.prediction_set)}."
            )
    if prediction.ood_score is not None:
        verb = "refused" if prediction.ood_score > 1 else "accepted"
        details.append(
            f"Unusualness for this model: {prediction.ood_score:.2f}x its limit ({verb}; above 1x is refused)."
        )
    if analysis.tta:
        views = "the image and its mirror image" if config.tta_views == "hflip" else "8 orientations"
        details.append(f"Test-time augmentation: {views} averaged.")
    if method and prediction.in_distribution:
        details.append(
            f"The map shows the regions that drove the '{prediction.label}' score ({method}). "
            + explanation_reliability(config.training.explanations, method)
        )
    text = head + " Research use only, not a diagnosis."
    return text + "\n\n<details><summary>Details</summary>\n\n" + "\n\n".join(details) + "\n\n</details>"


def _method(analysis: Analysis, method: str) -> str:
    return _model(analysis.model).predictor.config.cam_method if method in (None, "", BEST_MAP) else method


def _overlay(analysis: Analysis, method: str, opacity: float) -> np.ndarray | None:
    """The map over the image, computed once per method (opacity only re-blends)."""
    if not analysis.prediction.in_distribution:
        return None
    if method not in analysis.heatmaps:
        predictor = _model(analysis.model).predictor
        analysis.heatmaps[method] = predictor.heatmap(analysis.image, method, analysis.prediction.label)
    return overlay_heatmap(analysis.image, analysis.heatmaps[method], opacity)


def analyse(image: str, model_name: str, tta: bool, frame: int = 0) -> Analysis:
    """Decode ``image`` once (a DICOM file's ``frame``), choose the model (or take the one chosen) and predict."""
    try:
        rgb = load_image(image, frame=int(frame or 0))
        if model_name == AUTOMATIC:
            models = _available()
            if not models:
                raise gr.Error("No model is available.", print_exception=False)
            chosen = route({n: m.predictor for n, m in models.items()}, rgb)
            name = chosen.model or chosen.closest
            prediction = chosen.predictions[name]
            if chosen.model is not None and tta:
                prediction = models[name].predictor.predict(rgb, tta=True)
            return Analysis(rgb, Path(image).name, name, prediction, tta, chosen)
        prediction = _model(model_name).predictor.predict(rgb, tta=tta)
        return Analysis(rgb, Path(image).name, model_name, prediction, tta)
    except ImageError as e:
        raise gr.Error(f"This file cannot be analysed: {_without_temp_path(e, image)}", print_exception=False) from e


def predict(
    image: str | None, model_name: str, method: str, opacity: float, tta: bool, dicom: str | None = None, frame: int = 0
):
    """Classify one image (or a DICOM file's frame); returns the verdict with both probabilities, the decision
    in words, the CAM overlay (none for an image the model does not recognise), the model panel and the
    visitor's analysis."""
    image = dicom or image
    if image is None:
        raise gr.Error("Please upload an image first (drag and drop, paste, or click the box).", print_exception=False)
    analysis = analyse(image, model_name, tta, frame)
    method = _method(analysis, method)
    overlay = _overlay(analysis, method, opacity)
    prediction = analysis.prediction
    # An image the model does not recognise gets no probabilities either: "benign 100%" would read as a verdict.
    verdict = (prediction.decision, prediction.probabilities if prediction.in_distribution else {})
    return verdict, _verdict_text(analysis, method), overlay, describe_model(analysis.model), analysis


def rerender(analysis: Analysis | None, method: str, opacity: float):
    """A new map method or opacity for the answer on screen, from the visitor's analysis: no new prediction."""
    if analysis is None:
        return gr.update(), gr.update()
    method = _method(analysis, method)
    return _overlay(analysis, method, opacity), _verdict_text(analysis, method)


def _frames(dicom: str | None):
    """The frame slider: shown for a multi-frame DICOM file, up to its last frame."""
    if not dicom:
        return gr.update(visible=False, value=0)
    try:
        frames = load_image(dicom).info.get("frames", 1)
    except ImageError:
        return gr.update(visible=False, value=0)
    return gr.update(visible=frames > 1, maximum=max(frames - 1, 1), value=0)


def cleared():
    """What the result panel shows once the image or the model changes: nothing, rather than a stale answer."""
    return None, "", None, None, None


def write_report(analysis: Analysis | None, method: str, opacity: float) -> str | None:
    """The answer on screen as one self-contained HTML page (verdict, probabilities, map, model, its figures)."""
    if analysis is None:
        return None
    method = _method(analysis, method)
    config = _model(analysis.model).predictor.config
    out = Path(tempfile.mkdtemp(prefix="cancer-report-")) / f"report-{Path(analysis.file_name).stem}.html"
    out.write_text(
        single_image_report(
            image=analysis.image,
            overlay=_overlay(analysis, method, opacity),
            file_name=analysis.file_name,
            model_name=analysis.model,
            config=config,
            prediction=analysis.prediction,
            text=_verdict_text(analysis, method),
            test_figures=_test_figures(config),
        )
    )
    return str(out)


def predict_batch(files: list[str] | None, model_name: str, tta: bool):
    """Classify several files; returns a results table and the same table as a CSV file. A refused image has a
    decision and an unusualness but no probability; a file that cannot be read has its full reason."""
    if not files:
        raise gr.Error("Please add one or more image files.", print_exception=False)
    if len(files) > MAX_BATCH:
        raise gr.Error(f"At most {MAX_BATCH} files per batch (got {len(files)}).", print_exception=False)
    if model_name != AUTOMATIC:
        _model(model_name)  # an unavailable model is reported once, not per file
    rows = []
    for f in files:
        path = f if isinstance(f, str) else f.name
        name = Path(path).name
        try:
            a = analyse(path, model_name, tta)
        except gr.Error as e:
            reason = str(e.message).removeprefix("This file cannot be analysed: ")
            rows.append([name, "", "", None, None, "", None, reason])
            continue
        p = a.prediction
        shown = p.in_distribution
        rows.append(
            [
                name,
                a.model if (a.route is None or a.route.model) else "",
                p.decision,
                round(p.malignant_probability, 4) if shown else None,
                round(p.threshold, 4) if shown else None,
                " and ".join(p.prediction_set or ()) if shown else "",
                None if p.ood_score is None else round(p.ood_score, 2),
                "",
            ]
        )
    header = ["file", "model", "decision", "p_malignant", "threshold", "prediction_set", "unusualness", "error"]
    out = Path(tempfile.mkdtemp(prefix="cancer-batch-")) / "predictions.csv"
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return {"headers": header, "data": rows}, str(out)


def _slide_model(model_name: str) -> str:
    """The model for a slide: the one chosen, or with the automatic choice the first histopathology model."""
    if model_name != AUTOMATIC:
        return model_name
    tiled = [n for n in store.names if store.entries[n].modality == "histopathology"]
    if not tiled:
        raise gr.Error("No histopathology model is available for slides.", print_exception=False)
    return tiled[0]


def analyse_slide(file: str | None, model_name: str, tile_size: float, overlap: float, progress=gr.Progress()):
    """Tile a large image or a pyramidal slide, classify every tissue tile; returns the overlay, the summary,
    the top regions and the files to download (CSV, GeoJSON, heatmap, summary)."""
    if file is None:
        raise gr.Error("Please upload a large image or a slide first.", print_exception=False)
    name = _slide_model(model_name)
    predictor = _model(name).predictor
    path = file if isinstance(file, str) else file.name
    try:
        slides = SlidePredictor(predictor, tile_size=int(tile_size) or None, overlap=overlap)
        progress(0, desc="reading the slide and finding tissue")
        result = slides.predict(path)
    except (ImageError, ValueError) as e:
        raise gr.Error(f"This file cannot be analysed: {_without_temp_path(e, path)}", print_exception=False) from e
    out = write_outputs(result, Path(tempfile.mkdtemp(prefix="cancer-slide-")))
    summary = result.summary()

    def share(key: str) -> str:
        return "n/a" if summary[key] is None else f"{summary[key]:.0%}"

    text = (
        f"**{summary['tissue_tiles']} tissue tiles** of {summary['tiles']} ({summary['tile_size']} px each, model "
        f"*{name}*): {share('share_malignant')} of the tiles it answered called malignant, {share('share_uncertain')} "
        f"uncertain; {summary['refused_tiles']} refused ({share('share_refused')}: not like its training tiles, "
        f"shown near-black, never averaged in); {summary['background_tiles']} background tiles skipped. "
        "Blue is benign, red malignant, orange uncertain. Research use only, not a diagnosis."
    )
    top = [[r["x"], r["y"], r["size"], r["p_malignant"], r["decision"]] for r in summary["top_regions"]]
    overlay = np.asarray(Image.open(out["overlay"]))
    return overlay, text, {"headers": ["x", "y", "size", "p_malignant", "decision"], "data": top}, [
        str(out[k]) for k in ("csv", "geojson", "heatmap", "summary")
    ]


def _example_rows() -> list[list]:
    """Example images with their true label, paired with a model of their modality where the catalog has one
    (else the automatic choice)."""
    by_modality = {}
    for name, entry in store.entries.items():
        by_modality.setdefault(entry.modality, name)
    rows = []
    for path in sorted(EXAMPLES.glob("*.jpg")):
        modality, label = path.name.split("_")[:2]
        if modality in by_modality:
            rows.append([str(path), AUTOMATIC, f"{label} ({modality}, a test image)"])
    return rows


def _batch_tab(model: gr.Dropdown) -> None:
    files = gr.File(file_count="multiple", label="Images (JPEG, PNG, TIFF, DICOM, ...)")
    batch_tta = gr.Checkbox(False, label="Test-time augmentation")
    run_batch = gr.Button("Analyse all", variant="primary")
    table = gr.Dataframe(label="Results", interactive=False, wrap=True)
    csv_file = gr.File(label="Download CSV")
    run_batch.click(predict_batch, [files, model, batch_tta], [table, csv_file], api_name="predict_batch")


def _slide_tab(model: gr.Dropdown) -> None:
    gr.Markdown(
        "A large field or a whole slide (a big PNG or JPEG, or a pyramidal TIFF/SVS under the upload limit; "
        "larger slides: `cancer-models slides`). It is cut into tiles at the model's scale; "
        "background is skipped, every tissue tile is classified and checked, and tiles the model does not "
        "recognise are shown as refused. The GeoJSON opens in QuPath (*File > Import objects from file*)."
    )
    with gr.Row():
        with gr.Column():
            slide_file = gr.File(label="Large image or slide", elem_id="slide-file")
            tile_size = gr.Number(0, precision=0, label="Tile size in pixels (0: the model's)")
            overlap = gr.Slider(0.0, 0.75, value=0.0, step=0.25, label="Tile overlap")
            run_slide = gr.Button("Analyse slide", variant="primary")
        with gr.Column():
            slide_map = gr.Image(label="Tile map over the image", type="numpy", interactive=False, elem_id="slide-map")
            slide_summary = gr.Markdown(elem_id="slide-summary")
    top_regions = gr.Dataframe(label="Highest-scoring tiles (level-0 pixels)", interactive=False)
    slide_files = gr.File(label="Download: tiles CSV, GeoJSON, heatmap, summary", file_count="multiple")
    outputs = [slide_map, slide_summary, top_regions, slide_files]
    run_slide.click(analyse_slide, [slide_file, model, tile_size, overlap], outputs, api_name="predict_slide")
    slide_file.change(lambda: (None, "", None, None), None, outputs, api_name=False)


def _keep_answers_fresh(image, dicom, frame, model, tta, method, opacity, truth, results: list) -> None:
    """No stale answer: a new image, model or option clears the result; the map's method and opacity re-render
    from the visitor's analysis (``results``: verdict, decision, overlay, report, analysis)."""
    for event in (image.input, image.clear, dicom.change, model.input, tta.input):
        event(cleared, None, results, api_name=False)
    image.upload(lambda: "", None, truth, api_name=False)
    dicom.change(_frames, dicom, frame, api_name=False)
    _, decision, overlay, report, analysis = results
    for control in (method, opacity):
        control.input(rerender, [analysis, method, opacity], [overlay, decision], api_name=False).then(
            write_report, [analysis, method, opacity], report, api_name=False
        )


def build_demo() -> gr.Blocks:
    names = [AUTOMATIC, *store.names]
    with gr.Blocks(title="Cancer image classifier (research)") as demo:
        gr.HTML(WARNING_HTML)
        gr.Markdown(INTRO)
        model = gr.Dropdown(names, value=AUTOMATIC, label="Model (modality and architecture)")
        analysis = gr.State(None)
        with gr.Tab("Single image"):
            with gr.Row():
                with gr.Column():
                    image = ImageUpload(type="filepath", label="Image", sources=["upload", "clipboard"], height=320)
                    with gr.Accordion("Options", open=False):
                        method = gr.Dropdown(
                            [BEST_MAP, *CAM_METHODS], value=BEST_MAP, label="Explanation method"
                        )
                        opacity = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Overlay opacity")
                        tta = gr.Checkbox(
                            False, label="Test-time augmentation (the orientations the model was trained with)"
                        )
                    with gr.Accordion("DICOM file", open=False):
                        dicom = gr.File(label="A DICOM file (.dcm): used instead of the image above", elem_id="dicom")
                        frame = gr.Slider(0, 1, value=0, step=1, label="Frame", visible=False)
                    submit = gr.Button("Analyse", variant="primary")
                    truth = gr.Textbox(label="True label (examples only)", interactive=False, elem_id="truth")
                with gr.Column():
                    probabilities = VerdictLabel(
                        label="Verdict, with calibrated probabilities", num_top_classes=2, elem_id="verdict"
                    )
                    decision = gr.Markdown(label="Decision", elem_id="decision")
                    overlay = gr.Image(
                        label="Grad-CAM overlay", type="numpy", height=320, interactive=False, elem_id="overlay"
                    )
                    report = gr.File(label="Report (HTML)", elem_id="report")
            examples = _example_rows()
            if examples:
                gr.Examples(
                    examples, inputs=[image, model, truth], label="Examples (real test images, true label shown)"
                )
        with gr.Tab("Batch"):
            _batch_tab(model)
        with gr.Tab("Large image / slide"):
            _slide_tab(model)
        with gr.Tab("About the model"):
            panel = gr.Markdown(label="Model details", elem_id="model-panel")
        results = [probabilities, decision, overlay, report, analysis]  # what a new image or model clears
        submit.click(
            predict,
            [image, model, method, opacity, tta, dicom, frame],
            [probabilities, decision, overlay, panel, analysis],
            api_name="predict",
        ).then(write_report, [analysis, method, opacity], report, api_name=False)
        _keep_answers_fresh(image, dicom, frame, model, tta, method, opacity, truth, results)
        model.change(describe_model, model, panel, api_name=False)
        demo.load(describe_model, model, panel, api_name=False)
    return demo


demo = build_demo()
demo.queue(default_concurrency_limit=int(os.environ.get("APP_CONCURRENCY", "2")), max_size=64)

if __name__ == "__main__":
    demo.launch(max_file_size=MAX_UPLOAD, allowed_paths=[str(EXAMPLES)], footer_links=["api"])
