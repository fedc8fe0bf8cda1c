"""Prediction: images of any kind in, calibrated benign/malignant probabilities out."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from ..data.dicom import modality_conflict
from ..data.images import ImageInput, load_image, prepare_image, to_uint8_tensor
from ..models import CancerModel
from ..models.preprocessing import model_input
from ..trust.conformal import prediction_set as conformal_set
from ..trust.features import tap_features
from .explain import CAM_METHODS, compute_cam, overlay_heatmap

NOT_RECOGNISED = "not recognised"
UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Prediction:
    """One image's answer from one model.

    A refused image (``in_distribution`` False: unlike the model's training images, or a DICOM file of another
    modality) has no ``label``, no probabilities (``malignant_probability`` and ``probabilities`` are None) and
    an empty ``prediction_set``: a number computed for an image the model does not know would read as a verdict.
    """

    label: str | None  # the class at the model's threshold; None when refused (see ``decision``)
    malignant_probability: float | None  # temperature-calibrated; None when refused
    probabilities: dict[str, float] | None  # both classes, summing to 1; None when refused
    threshold: float  # the model's decision threshold on malignant_probability
    # False when the image does not look like the model's training images (config.ood); then there is no verdict.
    in_distribution: bool = True
    # How unusual the image is for this model, as a multiple of the model's limit: above 1 it is refused
    # (ood.py). None when the model has no out-of-distribution check.
    ood_score: float | None = None
    # The classes that stay plausible at the model's conformal level (conformal.py): always the decided class,
    # and the other one too when it cannot be ruled out; empty when rejected; None without calibration.
    prediction_set: tuple[str, ...] | None = None
    # Why the image was refused without looking at it, where a file said so (a DICOM Modality of another kind).
    refused_because: str | None = None

    @property
    def decision(self) -> str:
        """What to tell a person: ``label``, ``uncertain`` (both classes stay plausible) or ``not recognised``."""
        if not self.in_distribution:
            return NOT_RECOGNISED
        if self.prediction_set is not None and len(self.prediction_set) > 1:
            return UNCERTAIN
        return self.label


@dataclass(frozen=True)
class Explanation:
    prediction: Prediction
    method: str
    explained_label: str
    heatmap: np.ndarray  # float32 (H, W) in [0, 1], at the input image's size
    overlay: np.ndarray  # uint8 (H, W, 3): heatmap blended over the image
    image: Image.Image  # the upright RGB image that was explained


def refused(prediction: Prediction) -> Prediction:
    """``prediction`` as refused: no label, no probability, an empty set (where the model has sets)."""
    return replace(
        prediction,
        label=None,
        malignant_probability=None,
        probabilities=None,
        in_distribution=False,
        prediction_set=None if prediction.prediction_set is None else (),
    )


def tta_views(x: torch.Tensor, kind: str) -> list[torch.Tensor]:
    """The views of a batch (N, C, H, W) that show the same image: ``dihedral``, the 8 flips and 90-degree
    rotations (tissue and skin have no 'up'), ``hflip``, the image and its mirror image (an ultrasound
    image has the probe at the top), or ``vflip``, the image and its upside-down copy (a canonical mammogram
    has its chest wall on the left)."""
    if kind == "hflip":
        return [x, torch.flip(x, dims=(3,))]
    if kind == "vflip":
        return [x, torch.flip(x, dims=(2,))]
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
        """Decode and resize to a uint8 batch; normalisation happens on the device.

        Args:
            images: files, bytes, arrays or PIL images (anything ``load_image`` reads).

        Returns:
            uint8 (N, 3, S, S) at the model's input size, in the config's preprocessing.
        """
        size = self.config.input_size
        if not images:
            return torch.empty((0, 3, size, size), dtype=torch.uint8)
        return torch.stack([to_uint8_tensor(self.prepare(im), size) for im in images])

    def prepare(self, image: ImageInput) -> Image.Image:
        """``image`` as this model looks at it before resizing; what explanations are drawn over.

        Args:
            image: anything ``load_image`` reads.

        Returns:
            Upright RGB in the config's preprocessing (a mammogram in canonical form).
        """
        return prepare_image(load_image(image), self.config.preprocessing)

    def probabilities(self, batch: torch.Tensor, tta: bool | None = None) -> torch.Tensor:
        """Calibrated class probabilities for a uint8 batch.

        Args:
            batch: uint8 (N, 3, S, S) from ``preprocess``.
            tta: average the config's test-time views; None: the Predictor's setting.

        Returns:
            (N, 2) probabilities of the config's labels, temperature-scaled.
        """
        return self.analyse(batch, tta)[0]

    @torch.inference_mode()
    def analyse(self, batch: torch.Tensor, tta: bool | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Probabilities and unusualness from one forward pass.

        Args:
            batch: uint8 (N, 3, S, S) from ``preprocess`` (a tensor or a decoded split's images).
            tta: average the config's test-time views; None: the Predictor's setting. The unusualness is always
                that of the untransformed view.

        Returns:
            (N, 2) calibrated probabilities, and for a model with an out-of-distribution check each image's
            unusualness (N,; the largest of its scores as a multiple of its limit: above 1 is refused), else None.
        """
        tta = self.tta if tta is None else tta
        detector = self.model.ood_detector
        probs, scores = [], []
        with self._lock, tap_features(self.model.ood_layers() if detector else []) as features:
            for start in range(0, len(batch), self.batch_size):
                # A batch at a time, views included: a split read from the disk cache is never in memory whole.
                part = batch[start : start + self.batch_size]
                views = tta_views(part, self.config.tta_views) if tta else [part]
                chunk = torch.cat(views).to(self.device)
                x = model_input(chunk, self.config)
                logits = self.model(x) / self.config.temperature
                probs.append(logits.float().softmax(dim=1).view(len(views), -1, logits.shape[1]).mean(dim=0).cpu())
                if detector:  # the untransformed view's features: the first block of the chunk
                    n = len(probs[-1])
                    pooled, _ = self.model.ood_features(features.pop()[:n], features.sizes)
                    scores.append(detector.unusualness(pooled, chunk[:n], self.config.ood))
        if not probs:
            return torch.empty((0, len(self.config.labels))), (torch.empty(0) if detector else None)
        return torch.cat(probs), (torch.cat(scores) if detector else None)

    def predict(
        self, images: ImageInput | Sequence[ImageInput], tta: bool | None = None
    ) -> Prediction | list[Prediction]:
        """Classify one image or a list of them.

        Args:
            images: one image or a list (anything ``load_image`` reads: paths, DICOM files, bytes, PIL images).
            tta: average the config's test-time views; None: the Predictor's setting.

        Returns:
            A ``Prediction`` for one image, a list of them for a list: refused ones have no label or
            probabilities, and a DICOM file whose Modality rules the model out is refused with that reason.
        """
        single = not isinstance(images, (list, tuple))
        decoded = [load_image(im) for im in ([images] if single else images)]
        batch = self.preprocess(decoded)
        probs, scores = self.analyse(batch, tta)
        ood_scores = [None] * len(probs) if scores is None else scores.tolist()
        tta = self.tta if tta is None else tta
        predictions = [self.decide(p, s, tta) for p, s in zip(probs.tolist(), ood_scores, strict=True)]
        task = self.config.training.task or ""
        for i, image in enumerate(decoded):
            # A DICOM file's Modality is a hint, never trusted alone: it can refuse, the image check still runs.
            conflict = modality_conflict(image.info.get("dicom_modality"), task)
            if conflict:
                predictions[i] = replace(refused(predictions[i]), refused_because=conflict)
        return predictions[0] if single else predictions

    def decide(self, probs: list[float], ood_score: float | None, tta: bool = False) -> Prediction:
        """The decision for one image from what ``analyse`` gave.

        Args:
            probs: the image's calibrated probabilities, in the config's label order.
            ood_score: its unusualness (above 1 is refused); None: the model has no such check.
            tta: whether ``probs`` averaged test-time views (the prediction set's quantile follows).

        Returns:
            The ``Prediction``: refused, or a label at the config's threshold with its prediction set.
        """
        config = self.config
        benign, malignant = config.labels
        accepted = ood_score is None or ood_score <= 1
        if config.conformal is None:
            prediction_set = None
        elif not accepted:
            prediction_set = ()
        else:
            # Sets are calibrated on the views they are used with: with and without test-time augmentation.
            qhat = config.conformal.quantile(tta)
            prediction_set = conformal_set(probs, config.labels, config.threshold, qhat)
        answer = Prediction(
            label=malignant if probs[1] >= config.threshold else benign,
            malignant_probability=probs[1],
            probabilities={benign: probs[0], malignant: probs[1]},
            threshold=config.threshold,
            ood_score=ood_score,
            prediction_set=prediction_set,
        )
        return answer if accepted else refused(answer)

    def explain(
        self, image: ImageInput, method: str | None = None, alpha: float = 0.5, label: str | None = None
    ) -> Explanation:
        """Predict ``image`` and explain the predicted class with a CAM method.

        Args:
            image: anything ``load_image`` reads.
            method: a CAM method (``CAM_METHODS``); None: the config's, the one measured to point at lesions best.
            alpha: the heat map's opacity in the overlay.
            label: the class to explain; None: the predicted one (the malignant class for a refused image).

        Returns:
            The ``Explanation``: prediction, map at the prepared image's size, overlay and that image.
        """
        method = method or self.config.cam_method
        rgb = self.prepare(image)
        probs, scores = self.analyse(to_uint8_tensor(rgb, self.config.input_size)[None], tta=False)
        prediction = self.decide(probs[0].tolist(), None if scores is None else float(scores[0]))
        # A refused image has no class of its own; its map, if asked for, is the malignant class's.
        explained = label or prediction.label or self.config.labels[1]
        heatmap = self.heatmap(rgb, method, explained)
        return Explanation(
            prediction=prediction,
            method=method,
            explained_label=explained,
            heatmap=heatmap,
            overlay=overlay_heatmap(rgb, heatmap, alpha),
            image=rgb,
        )

    def heatmap(self, image: ImageInput, method: str | None = None, label: str | None = None) -> np.ndarray:
        """A class's CAM map without a prediction: to show another method's map of a prediction already made.

        Args:
            image: anything ``load_image`` reads.
            method: a CAM method; None: the config's.
            label: the class; None: the malignant one.

        Returns:
            float32 (H, W) in [0, 1] at the prepared image's size.
        """
        method = method or self.config.cam_method
        label = label or self.config.labels[1]
        if method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method {method!r}; choose from {', '.join(CAM_METHODS)}")
        if label not in self.config.labels:
            raise ValueError(f"unknown label {label!r}; the model's labels are {self.config.labels}")
        rgb = self.prepare(image)
        x = to_uint8_tensor(rgb, self.config.input_size)[None]
        with self._lock:
            x = model_input(x.to(self.device), self.config)
            cam = compute_cam(self.model, x, self.config.labels.index(label), method)
        return np.asarray(Image.fromarray(cam).resize(rgb.size, Image.BILINEAR)).clip(0, 1)
