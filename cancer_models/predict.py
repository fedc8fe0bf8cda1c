"""Prediction: images of any kind in, calibrated benign/malignant probabilities out."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .explain import CAM_METHODS, compute_cam, overlay_heatmap
from .images import ImageInput, load_image, normalize, to_uint8_tensor
from .models import CancerModel


@dataclass(frozen=True)
class Prediction:
    label: str
    malignant_probability: float  # temperature-calibrated
    probabilities: dict[str, float]  # both classes, summing to 1
    threshold: float  # the model's decision threshold on malignant_probability

    @property
    def is_malignant(self) -> bool:
        return self.malignant_probability >= self.threshold


@dataclass(frozen=True)
class Explanation:
    prediction: Prediction
    method: str
    explained_label: str
    heatmap: np.ndarray  # float32 (H, W) in [0, 1], at the input image's size
    overlay: np.ndarray  # uint8 (H, W, 3): heatmap blended over the image
    image: Image.Image  # the upright RGB image that was explained


def dihedral_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips and 90-degree rotations of a batch (N, C, H, W): tissue has no 'up'."""
    rotations = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
    return rotations + [torch.flip(r, dims=(3,)) for r in rotations]


class Predictor:
    """Runs a loaded model on images with the preprocessing its config prescribes.

    One lock serialises use of the model: Grad-CAM puts hooks on shared layers, so a concurrent
    forward pass would otherwise leak into another request's explanation.
    """

    def __init__(
        self, model: CancerModel, device: str | torch.device | None = None, tta: bool = False, batch_size: int = 32
    ) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.tta = tta
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Decode and resize to a uint8 batch (N, 3, S, S); normalisation happens on the device."""
        size = self.config.input_size
        if not images:
            return torch.empty((0, 3, size, size), dtype=torch.uint8)
        return torch.stack([to_uint8_tensor(load_image(im), size) for im in images])

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor, tta: bool | None = None) -> torch.Tensor:
        """Calibrated class probabilities (N, 2) for a uint8 batch from ``preprocess``."""
        tta = self.tta if tta is None else tta
        views = dihedral_views(batch) if tta else [batch]
        out = []
        with self._lock:
            for start in range(0, len(batch), self.batch_size):
                chunk = torch.cat([v[start : start + self.batch_size] for v in views]).to(self.device)
                x = normalize(chunk, self.config.mean, self.config.std).contiguous(memory_format=torch.channels_last)
                logits = self.model(x) / self.config.temperature
                probs = logits.float().softmax(dim=1).view(len(views), -1, logits.shape[1]).mean(dim=0)
                out.append(probs.cpu())
        return torch.cat(out) if out else torch.empty((0, len(self.config.labels)))

    def predict(
        self, images: ImageInput | Sequence[ImageInput], tta: bool | None = None
    ) -> Prediction | list[Prediction]:
        """Classify one image (returns a Prediction) or a list of them (returns a list)."""
        single = not isinstance(images, (list, tuple))
        batch = self.preprocess([images] if single else list(images))
        predictions = [self._to_prediction(p) for p in self.probabilities(batch, tta).tolist()]
        return predictions[0] if single else predictions

    def _to_prediction(self, probs: list[float]) -> Prediction:
        benign, malignant = self.config.labels
        p = probs[1]
        return Prediction(
            label=malignant if p >= self.config.threshold else benign,
            malignant_probability=p,
            probabilities={benign: probs[0], malignant: probs[1]},
            threshold=self.config.threshold,
        )

    def explain(
        self, image: ImageInput, method: str = "gradcam", alpha: float = 0.5, label: str | None = None
    ) -> Explanation:
        """Predict ``image`` and explain the predicted class (or ``label``) with a CAM method."""
        if method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method {method!r}; choose from {', '.join(CAM_METHODS)}")
        if label is not None and label not in self.config.labels:
            raise ValueError(f"unknown label {label!r}; the model's labels are {self.config.labels}")
        rgb = load_image(image)
        x = to_uint8_tensor(rgb, self.config.input_size)[None]
        prediction = self._to_prediction(self.probabilities(x, tta=False)[0].tolist())
        explained = label or prediction.label
        with self._lock:
            x = normalize(x.to(self.device), self.config.mean, self.config.std)
            cam = compute_cam(self.model, x, self.config.labels.index(explained), method)
        heatmap = np.asarray(Image.fromarray(cam).resize(rgb.size, Image.BILINEAR)).clip(0, 1)
        return Explanation(
            prediction=prediction,
            method=method,
            explained_label=explained,
            heatmap=heatmap,
            overlay=overlay_heatmap(rgb, heatmap, alpha),
            image=rgb,
        )
