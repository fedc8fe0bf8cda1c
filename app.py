"""Gradio app (a Hugging Face Space): benign vs malignant, how sure, and where the model looked.

    python app.py            # http://127.0.0.1:7860

``create_app()`` builds the page; nothing happens on import. Models come from the catalog (app_models.json, or the
file named by CANCER_MODELS_CATALOG): from the Hub when it is reachable, otherwise from the bundled folders. The
answers come from the same library calls as ``cancer-models predict`` (``cancer_models.inference.routing``).
Research software, not a medical device.
"""

from __future__ import annotations

import csv
import logging
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
from cancer_models.inference.routing import ROW_COLUMNS, Answer, answer
from cancer_models.inference.slide_outputs import write_outputs
from cancer_models.inference.slides import SlidePredictor
from cancer_models.reporting.model_card import RESEARCH_WARNING, explanation_reliability
from cancer_models.reporting.report import single_image_report
from catalog import CatalogEntry, LoadedModel, ModelStore, load_catalog

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
LOG = logging.getLogger(__name__)
MAX_UPLOAD = "20mb"
MAX_BATCH = 64

WARNING_HTML = (
    '<div style="border:2px solid #b91c1c;border-radius:8px;padding:8px 12px;background:#fef2f2;color:#7f1d1d">'
    "<strong>Research software, not a medical device.</strong> Not clinically validated. Do not use it to diagnose, "
    "treat or triage anyone; its outputs are not medical advice.</div>"
)
INTRO = (
    "# Benign or malignant? With an explanation\n"
    "Histopathology tiles, dermoscopy photos, breast ultrasound, screening mammograms. Upload an image or a DICOM "
    "file: the app chooses the model for its kind of image (or pick one), answers benign, malignant, *uncertain* "
    "(both stay plausible) or *not recognised* (not an image it was trained on), and shows a Grad-CAM map of where "
    "the model looked. Uploads are analysed in memory and not stored."
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
# The batch table's column widths: wide enough that no header breaks inside a word.
BATCH_WIDTHS = ["19%", "15%", "10%", "10%", "9%", "15%", "10%", "12%"]


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


@dataclass
class Analysis:
    """One image's answer, kept per visitor (Gradio state) so that the map's method and opacity re-render without a
    new prediction, and the report is written from what is on screen."""

    image: Image.Image  # as the answering (or closest) model looked at it: a mammogram in canonical form
    file_name: str
    answer: Answer  # who answered (or came closest) and what
    tta: bool
    info: dict = field(default_factory=dict)  # what the file said about the image (DICOM region, view, ...)
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)  # by CAM method

    @property
    def model(self) -> str:
        """The catalog name of the model that answered, or of the closest one when every model refused."""
        return self.answer.closest

    @property
    def prediction(self) -> Prediction:
        return self.answer.prediction


def _path(file) -> str:
    """An upload's path on the server (Gradio hands a path, or an object with a ``name``)."""
    return file if isinstance(file, str) else file.name


def _without_temp_path(error: Exception, path: str) -> str:
    """Users know their file by its name, not by the server's upload folder."""
    return str(error).replace(str(path), Path(path).name)


def _level(config: ModelConfig) -> float:
    return config.conformal.level if config.conformal else 0.9


def _cannot_analyse(error: ImageError, path: str) -> gr.Error:
    return gr.Error(f"This file cannot be analysed: {_without_temp_path(error, path)}", print_exception=False)


class App:
    """What the page does, without the page: every event handler of ``create_app``'s Blocks is a method here, so
    the same answers can be asked for in-process.

    Args:
        store: the catalog's models, loaded on first use.
    """

    def __init__(self, store: ModelStore) -> None:
        self.store = store

    # --- models -------------------------------------------------------------------------------------------------

    def model(self, name: str) -> LoadedModel:
        try:
            return self.store.get(name)
        except Exception as e:  # a model that cannot be loaded must not take the app down
            raise gr.Error(f"Model '{name}' is unavailable: {e}", print_exception=False) from e

    def available(self) -> dict[str, LoadedModel]:
        """Every model that loads (one that cannot is left out of the automatic choice, not fatal)."""
        loaded = {}
        for name in self.store.names:
            try:
                loaded[name] = self.store.get(name)
            except Exception:  # noqa: BLE001 - reported when that model is chosen by hand
                LOG.info("model %s does not load; left out of the automatic choice", name)
        return loaded

    def kind(self, name: str) -> str:
        return self.store.entries[name].modality or "training"

    def describe_model(self, name: str) -> str:
        """Markdown for the model panel: the model card's facts and where the weights came from."""
        if name == AUTOMATIC:
            lines = [
                "### Automatic choice",
                (
                    "Each image goes to the model whose kind of image it is, by every model's own check of whether "
                    "the image looks like its training images. The models:"
                ),
            ]
            lines += [f"- **{n}**: {self.kind(n)} images" for n in self.store.names]
            return "\n".join(lines)
        loaded = self.model(name)
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
        lines.append(f"- **Test split:** {test_figures(config)}")
        lines.append(f"- **Intended use:** research and education on {self.kind(name)} images. {RESEARCH_WARNING}")
        return "\n".join(lines)

    # --- one image ----------------------------------------------------------------------------------------------

    def analyse(self, file: str, model_name: str, tta: bool, frame: int = 0) -> Analysis:
        """Decode ``file`` once (a DICOM file's ``frame``), choose the model (or take the one chosen) and answer."""
        path = _path(file)
        try:
            rgb = load_image(path, frame=int(frame or 0))
            if model_name == AUTOMATIC:
                predictors = {n: m.predictor for n, m in self.available().items()}
                if not predictors:
                    raise gr.Error("No model is available.", print_exception=False)
            else:
                predictors = {model_name: self.model(model_name).predictor}
            answered = answer(predictors, rgb, tta)
            shown = predictors[answered.closest].prepare(rgb)  # what that model looked at, maps drawn over it
            return Analysis(shown, Path(path).name, answered, tta, dict(rgb.info))
        except ImageError as e:
            raise _cannot_analyse(e, path) from e

    def verdict_text(self, analysis: Analysis, method: str | None) -> str:
        """The decision in plain words, then the numbers in an expandable section; never contradicting the
        headline (the decision) or the bars (the two probabilities, shown unless the image is refused)."""
        prediction, config = analysis.prediction, self.model(analysis.model).predictor.config
        route, kind = analysis.answer.route, self.kind(analysis.model)
        chosen = f"{route.reason({n: self.kind(n) for n in self.store.names})} " if route else ""
        if route is not None and route.model is None:  # no model answered: nothing here speaks for one
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
        if analysis.answer.model is not None or route is None:
            head = head.strip() + f" This model is for {kind} images only."
        note = analysis.answer.large_image_note(config)
        head += f" {note}" if note else ""
        text = head.strip() + " Research use only, not a diagnosis."
        details = "\n\n".join(self._details(analysis, config, method))
        return text + "\n\n<details><summary>Details</summary>\n\n" + details + "\n\n</details>"

    def _details(self, analysis: Analysis, config: ModelConfig, method: str | None) -> list[str]:
        prediction, details = analysis.prediction, []
        region, info = analysis.info.get("dicom_region"), analysis.info
        said = [f"{name} {info[key]}" for key, name in (("dicom_laterality", "breast"), ("dicom_view", "view"))
                if info.get(key)]  # fmt: skip
        if said:
            details.append(f"The DICOM file says: {', '.join(said)}.")
        if info.get("dicom_note"):
            details.append(f"The DICOM file holds {info['dicom_note']}.")
        if config.preprocessing == "mammogram":
            details.append(
                "The model looks at the breast alone: found, cut out of its background and labels, turned with the "
                "chest wall on the left and dark background (the map is drawn over that view)."
            )
        if region:
            details.append(
                "The DICOM file states where its ultrasound image is: only that region (pixels "
                f"{region[0]}-{region[2]} across, {region[1]}-{region[3]} down) was analysed, not the screen around it."
            )
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
            owner = "this model" if analysis.answer.model else f"the closest model ({analysis.model})"
            details.append(
                f"Unusualness for {owner}: {prediction.ood_score:.2f}x its limit ({verb}; above 1x is refused)."
            )
        if analysis.tta and prediction.in_distribution:
            views = "the image and its mirror image" if config.tta_views == "hflip" else "8 orientations"
            details.append(f"Test-time augmentation: {views} averaged.")
        if method and prediction.in_distribution:
            details.append(
                f"The map shows the regions that drove the '{prediction.label}' score ({method}). "
                + explanation_reliability(config.training.explanations, method)
            )
        return details

    def method(self, analysis: Analysis, method: str | None) -> str:
        return self.model(analysis.model).predictor.config.cam_method if method in (None, "", BEST_MAP) else method

    def overlay(self, analysis: Analysis, method: str, opacity: float) -> np.ndarray | None:
        """The map over the image, computed once per method (opacity only re-blends); none for a refused image."""
        if not analysis.prediction.in_distribution:
            return None
        if method not in analysis.heatmaps:
            predictor = self.model(analysis.model).predictor
            analysis.heatmaps[method] = predictor.heatmap(analysis.image, method, analysis.prediction.label)
        return overlay_heatmap(analysis.image, analysis.heatmaps[method], opacity)

    def predict(self, file, model_name: str, method: str, opacity: float, tta: bool, frame: int = 0):
        """Classify one image (or a DICOM file's frame); returns the verdict with both probabilities, the decision
        in words, the CAM overlay (none for an image the model does not recognise), the model panel and the
        visitor's analysis."""
        if file is None:
            raise gr.Error("Please upload an image or a DICOM file first (drag and drop, or click the box).",
                           print_exception=False)  # fmt: skip
        analysis = self.analyse(file, model_name, tta, frame)
        method = self.method(analysis, method)
        prediction = analysis.prediction
        # An image the model does not recognise gets no probabilities either: "benign 100%" would read as a verdict.
        verdict = (prediction.decision, prediction.probabilities or {})
        text, overlay = self.verdict_text(analysis, method), self.overlay(analysis, method, opacity)
        return verdict, text, overlay, self.describe_model(analysis.model), analysis

    def rerender(self, analysis: Analysis | None, method: str, opacity: float):
        """A new map method or opacity for the answer on screen, from the visitor's analysis: no new prediction."""
        if analysis is None:
            return gr.update(), gr.update()
        method = self.method(analysis, method)
        return self.overlay(analysis, method, opacity), self.verdict_text(analysis, method)

    def write_report(self, analysis: Analysis | None, method: str, opacity: float) -> str | None:
        """The answer on screen as one self-contained HTML page (verdict, probabilities, map, and the answering
        model with its test figures; a refused image names no model's figures)."""
        if analysis is None:
            return None
        method = self.method(analysis, method)
        config = self.model(analysis.model).predictor.config
        answered = analysis.prediction.in_distribution
        out = Path(tempfile.mkdtemp(prefix="cancer-report-")) / f"report-{Path(analysis.file_name).stem}.html"
        out.write_text(
            single_image_report(
                image=analysis.image,
                overlay=self.overlay(analysis, method, opacity),
                file_name=analysis.file_name,
                model_name=analysis.model if answered else None,
                config=config,
                prediction=analysis.prediction,
                text=self.verdict_text(analysis, method),
                test_figures=test_figures(config),
            )
        )
        return str(out)

    def preview(self, file, frame: int = 0):
        """The upload as a viewer shows it (a DICOM file's frame, upright, cropped to its stated region), and the
        frame slider (shown for a multi-frame DICOM file)."""
        if file is None:
            return None, gr.update(visible=False, value=0)
        try:
            image = load_image(_path(file), frame=int(frame or 0))
        except ImageError:
            return None, gr.update(visible=False, value=0)  # the reason comes with Analyse
        frames = image.info.get("frames", 1)
        return image, gr.update(visible=frames > 1, maximum=max(frames - 1, 1))

    # --- batches and slides -------------------------------------------------------------------------------------

    def predict_batch(self, files: list | None, model_name: str, tta: bool):
        """Classify several files; returns a results table and the same table as a CSV file, with the columns
        of ``cancer-models predict``. A refused image has a decision, an unusualness and the model it was
        closest to, but no probability; a file that cannot be read has its full reason."""
        if not files:
            raise gr.Error("Please add one or more image files.", print_exception=False)
        if len(files) > MAX_BATCH:
            raise gr.Error(f"At most {MAX_BATCH} files per batch (got {len(files)}).", print_exception=False)
        if model_name != AUTOMATIC:
            self.model(model_name)  # an unavailable model is reported once, not per file
        rows = []
        for f in files:
            path = _path(f)
            name = Path(path).name
            try:
                row = self.analyse(path, model_name, tta).answer.row(name)
            except gr.Error as e:
                row = {"file": name, "error": str(e.message).removeprefix("This file cannot be analysed: ")}
            rows.append([row.get(column, "") for column in ROW_COLUMNS])
        out = Path(tempfile.mkdtemp(prefix="cancer-batch-")) / "predictions.csv"
        with open(out, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(ROW_COLUMNS)
            writer.writerows(rows)
        return {"headers": ROW_COLUMNS, "data": rows}, str(out)

    def slide_model(self, model_name: str) -> str:
        """The model for a slide: the one chosen, or with the automatic choice the first histopathology model."""
        if model_name != AUTOMATIC:
            return model_name
        tiled = [n for n in self.store.names if self.store.entries[n].modality == "histopathology"]
        if not tiled:
            raise gr.Error("No histopathology model is available for slides.", print_exception=False)
        return tiled[0]

    def analyse_slide(self, file, model_name: str, tile_size: float, overlap: float, progress=gr.Progress()):  # noqa: B008 - Gradio passes progress through this default
        """Tile a large image or a pyramidal slide, classify every tissue tile; returns the overlay, the summary,
        the top regions and the files to download (CSV, GeoJSON, heatmap, summary)."""
        if file is None:
            raise gr.Error("Please upload a large image or a slide first.", print_exception=False)
        name = self.slide_model(model_name)
        predictor = self.model(name).predictor
        path = _path(file)
        try:
            slides = SlidePredictor(predictor, tile_size=int(tile_size) or None, overlap=overlap)
            progress(0, desc="reading the slide and finding tissue")
            result = slides.predict(path)
        except (ImageError, ValueError) as e:
            raise _cannot_analyse(e, path) from e
        out = write_outputs(result, Path(tempfile.mkdtemp(prefix="cancer-slide-")))
        summary = result.summary()
        top = [[r["x"], r["y"], r["size"], r["p_malignant"], r["decision"]] for r in summary["top_regions"]]
        overlay = np.asarray(Image.open(out["overlay"]))
        files = [str(out[k]) for k in ("csv", "geojson", "heatmap", "summary")]
        table = {"headers": ["x", "y", "size", "p_malignant", "decision"], "data": top}
        return overlay, slide_text(summary, name), table, files

    def example_rows(self) -> list[list]:
        """Example images with their true label, answered by the automatic choice where the catalog has a model
        of their modality."""
        modalities = {entry.modality for entry in self.store.entries.values()}
        rows = []
        for path in sorted(EXAMPLES.glob("*.jpg")):
            modality, label = path.name.split("_")[:2]
            if modality in modalities:
                rows.append([str(path), AUTOMATIC, f"{label} ({modality}, a test image)"])
        return rows


def test_figures(config: ModelConfig) -> str:
    """The model's recorded test figures in one line, with their intervals."""
    test = (config.training.metrics or {}).get("test")
    if not test:
        return "no test metrics recorded for this model"

    def fmt(key: str) -> str:
        ci, value = test.get(f"{key}_ci"), test.get(key)
        if value is None:
            return f"{key} n/a"
        return f"{key} {value:.3f}" + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else "")

    return f"n = {test['n']}; " + "; ".join(fmt(k) for k in ("auc", "accuracy", "sensitivity", "specificity"))


def slide_text(summary: dict, model: str) -> str:
    """A slide's summary in words; the colours are those of the map's legend."""

    def share(key: str) -> str:
        return "n/a" if summary[key] is None else f"{summary[key]:.0%}"

    return (
        f"**{summary['tissue_tiles']} tissue tiles** of {summary['tiles']} ({summary['tile_size']} px each, model "
        f"*{model}*): {share('share_malignant')} of the tiles it answered called malignant, "
        f"{share('share_uncertain')} uncertain; {summary['refused_tiles']} refused ({share('share_refused')}: not "
        f"like its training tiles, shown near-black, never averaged in); {summary['background_tiles']} background "
        "tiles skipped. Blue is benign, red malignant, orange uncertain (the legend is under the map). Research use "
        "only, not a diagnosis."
    )


# --- the page ---------------------------------------------------------------------------------------------------


def _batch_tab(app: App, model: gr.Dropdown) -> None:
    files = gr.File(file_count="multiple", label="Images (JPEG, PNG, TIFF, DICOM, ...)")
    batch_tta = gr.Checkbox(False, label="Test-time augmentation")
    run_batch = gr.Button("Analyse all", variant="primary")
    table = gr.Dataframe(label="Results", interactive=False, wrap=True, column_widths=BATCH_WIDTHS, elem_id="batch")
    csv_file = gr.File(label="Download CSV")
    run_batch.click(app.predict_batch, [files, model, batch_tta], [table, csv_file], api_name="predict_batch")
    for event in (files.change, model.change, batch_tta.input):
        event(lambda: (None, None), None, [table, csv_file], api_name=False)


def _slide_tab(app: App, model: gr.Dropdown) -> None:
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
    top_regions = gr.Dataframe(label="Most malignant answered tiles (level-0 pixels)", interactive=False)
    slide_files = gr.File(label="Download: tiles CSV, GeoJSON, heatmap, summary", file_count="multiple")
    outputs = [slide_map, slide_summary, top_regions, slide_files]
    run_slide.click(app.analyse_slide, [slide_file, model, tile_size, overlap], outputs, api_name="predict_slide")
    for event in (slide_file.change, model.change, tile_size.input, overlap.input):  # no summary of another run
        event(lambda: (None, "", None, None), None, outputs, api_name=False)


def _keep_answers_fresh(app: App, upload, preview, frame, model, tta, method, opacity, truth, results: list) -> None:
    """No stale answer: a new file (an example click included), frame, model or option clears the result; the
    map's method and opacity re-render from the visitor's analysis (``results``: verdict, decision, overlay,
    report, analysis)."""
    cleared = lambda: (None, "", None, None, None)
    for event in (upload.change, frame.input, model.change, tta.input):
        event(cleared, None, results, api_name=False)
    upload.upload(lambda: "", None, truth, api_name=False)  # a visitor's own file has no known label
    upload.change(app.preview, upload, [preview, frame], api_name=False)
    frame.input(app.preview, [upload, frame], [preview, frame], api_name=False)
    _, decision, overlay, report, analysis = results
    for control in (method, opacity):
        control.input(app.rerender, [analysis, method, opacity], [overlay, decision], api_name=False).then(
            app.write_report, [analysis, method, opacity], report, api_name=False
        )


def _single_tab(app: App, model: gr.Dropdown, panel: gr.Markdown) -> None:
    analysis = gr.State(None)
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Image or DICOM file (JPEG, PNG, TIFF, .dcm, ...)", elem_id="upload", height=120)
            preview = gr.Image(
                label="The image, upright, as a viewer shows it", type="pil", height=260, interactive=False,
                elem_id="preview",
            )  # fmt: skip
            frame = gr.Slider(0, 1, value=0, step=1, label="DICOM frame", visible=False)
            with gr.Accordion("Options", open=False):
                method = gr.Dropdown([BEST_MAP, *CAM_METHODS], value=BEST_MAP, label="Explanation method")
                opacity = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Overlay opacity")
                tta = gr.Checkbox(False, label="Test-time augmentation (the orientations the model was trained with)")
            submit = gr.Button("Analyse", variant="primary")
            truth = gr.Textbox(label="True label (examples only)", interactive=False, elem_id="truth")
        with gr.Column():
            probabilities = VerdictLabel(
                label="Verdict, with calibrated probabilities", num_top_classes=2, elem_id="verdict"
            )
            decision = gr.Markdown(label="Decision", elem_id="decision")
            overlay = gr.Image(label="Grad-CAM overlay", type="numpy", height=320, interactive=False, elem_id="overlay")
            report = gr.File(label="Report (HTML)", elem_id="report")
    examples = app.example_rows()
    if examples:
        gr.Examples(examples, inputs=[upload, model, truth], label="Examples (real test images, true label shown)")
    results = [probabilities, decision, overlay, report, analysis]  # what a new image or model clears
    submit.click(
        app.predict,
        [upload, model, method, opacity, tta, frame],
        [probabilities, decision, overlay, panel, analysis],
        api_name="predict",
    ).then(app.write_report, [analysis, method, opacity], report, api_name=False)
    _keep_answers_fresh(app, upload, preview, frame, model, tta, method, opacity, truth, results)


def create_app(catalog: list[CatalogEntry] | None = None, warm_up: bool = True) -> gr.Blocks:
    """The Gradio page, queued and ready to ``launch()``.

    Args:
        catalog: the models to offer; default: ``load_catalog()`` (app_models.json or CANCER_MODELS_CATALOG).
        warm_up: load every model and run grad-cam once in a background thread while the page starts, so that
            the first request finds them ready.

    Returns:
        The Blocks, with ``.app_state`` the ``App`` behind it.
    """
    app = App(ModelStore(catalog if catalog is not None else load_catalog()))
    if warm_up:
        image = EXAMPLES / "histopathology_benign_lungn100.jpg"
        threading.Thread(target=app.store.warm_up, args=(image,), daemon=True).start()
    names = [AUTOMATIC, *app.store.names]
    with gr.Blocks(title="Cancer image classifier (research)") as demo:
        gr.HTML(WARNING_HTML)
        gr.Markdown(INTRO)
        model = gr.Dropdown(names, value=AUTOMATIC, label="Model (modality and architecture)")
        with gr.Tab("Single image"):
            single = gr.Column()  # the model panel lives in its own tab, made below
        with gr.Tab("Batch"):
            _batch_tab(app, model)
        with gr.Tab("Large image / slide"):
            _slide_tab(app, model)
        with gr.Tab("About the model"):
            panel = gr.Markdown(label="Model details", elem_id="model-panel")
        with single:
            _single_tab(app, model, panel)
        model.change(app.describe_model, model, panel, api_name=False)
        demo.load(app.describe_model, model, panel, api_name=False)
    demo.queue(default_concurrency_limit=int(os.environ.get("APP_CONCURRENCY", "2")), max_size=64)
    demo.app_state = app
    return demo


if __name__ == "__main__":
    create_app().launch(max_file_size=MAX_UPLOAD, allowed_paths=[str(EXAMPLES)], footer_links=["api"])
