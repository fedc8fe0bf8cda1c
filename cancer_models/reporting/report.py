"""One image's answer as a self-contained HTML page: what a person can keep, print or attach.

The page holds the verdict, both probabilities, the decision in words, the image and its map (embedded as
PNG), the model and its measured test figures, and the research-use warning. It carries the file's name only
(never a DICOM attribute).
"""

from __future__ import annotations

import base64
import html
import io
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..config import ModelConfig

if TYPE_CHECKING:  # reporting formats predictions; it never makes them
    from ..inference.predict import Prediction

RESEARCH_NOTE = (
    "Research software, not a medical device. Not clinically validated. Do not use it to diagnose, treat or "
    "triage anyone; its outputs are not medical advice."
)


def _png(image: Image.Image | np.ndarray, longest: int = 512) -> str:
    image = Image.fromarray(image) if isinstance(image, np.ndarray) else image.copy()
    image.thumbnail((longest, longest))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _markdown_to_html(text: str) -> str:
    """The app's decision text (bold, italics, paragraphs, a details block) as HTML, escaped first."""
    text = re.sub(r"</?details>|<summary>.*?</summary>", "", text)
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    escaped = re.sub(r"\*(.+?)\*", r"<em>\1</em>", escaped)
    return "".join(f"<p>{p.strip()}</p>" for p in escaped.split("\n\n") if p.strip())


def _model_section(model_name: str | None, config: ModelConfig, test_figures: str) -> str:
    e = html.escape
    if model_name is None:
        return "<h2>Model</h2>\n<p>No model gave a verdict for this image, so no model's test figures apply to it.</p>"
    return f"""<h2>Model</h2>
<p>{e(model_name)}: <code>{e(config.architecture)}</code>, input {config.input_size}x{config.input_size} px,
decision threshold P({e(config.labels[1])}) &ge; {config.threshold:.3f}.</p>
<p>Measured on its held-out test split: {e(test_figures)}.</p>"""


def single_image_report(
    image: Image.Image,
    overlay: np.ndarray | None,
    file_name: str,
    model_name: str | None,
    config: ModelConfig,
    prediction: Prediction,
    text: str,
    test_figures: str,
) -> str:
    """The HTML page for one analysed image. ``model_name`` is the model that answered, with ``config`` and
    ``test_figures`` its own; None when no model answered (a refused image), and then no model's figures are
    shown: they describe images like the training data, which this one is not."""
    e = html.escape
    rows = ""
    if prediction.in_distribution:
        rows = "".join(f"<tr><td>{e(label)}</td><td>{p:.1%}</td></tr>" for label, p in prediction.probabilities.items())
        rows = f"<table><tr><th>class</th><th>calibrated probability</th></tr>{rows}</table>"
    images = f'<figure><img src="{_png(image)}" alt="the image"><figcaption>{e(file_name)}</figcaption></figure>'
    if overlay is not None:
        images += (
            f'<figure><img src="{_png(overlay)}" alt="Grad-CAM map"><figcaption>Grad-CAM map</figcaption></figure>'
        )
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Report: {e(file_name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#111}}
.warning{{border:2px solid #b91c1c;border-radius:8px;padding:8px 12px;background:#fef2f2;color:#7f1d1d}}
h1{{font-size:1.6rem}} .verdict{{font-size:2rem;font-weight:700}} figure{{display:inline-block;margin:0 1rem 1rem 0}}
img{{max-width:28rem;border:1px solid #ccc}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px}}</style>
</head><body>
<div class="warning"><strong>{e(RESEARCH_NOTE)}</strong></div>
<h1>Benign or malignant: report for {e(file_name)}</h1>
<p class="verdict" id="verdict">{e(prediction.decision)}</p>
{rows}
{_markdown_to_html(text)}
{images}
{_model_section(model_name, config, test_figures)}
<p><small>Written {when} by cancer-models.</small></p>
</body></html>
"""
