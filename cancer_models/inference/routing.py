"""Which model is an image for? Every model's own rejection check decides.

Each model says how unusual the image is for it, as a multiple of its limit (``Prediction.ood_score``; above 1
it refuses the image). The image goes to the model that accepts it with the most room to spare; when every
model refuses it, it is none of the supported kinds, and the nearest one is named only as the closest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..data.images import ImageInput, load_image
from .predict import Prediction, Predictor


@dataclass(frozen=True)
class Route:
    model: str | None  # the chosen model's name; None when every model refuses the image
    closest: str  # the model with the lowest unusualness, chosen or not
    unusualness: dict[str, float]  # each model's unusualness for the image (1 is its limit)
    predictions: dict[str, Prediction]  # each model's prediction, without test-time views

    def reason(self, modality: Mapping[str, str] | None = None) -> str:
        """One sentence for a person on why this model was chosen, or why none was."""
        kind = (modality or {}).get(self.closest) or self.closest
        ratio = self.unusualness[self.closest]
        if self.model is None:
            return (
                f"None of the models recognises this image: it is not a kind of image they were trained on "
                f"(the closest, {kind}, finds it {ratio:.1f}x as unusual as its limit allows)."
            )
        others = [m for m, r in self.unusualness.items() if m != self.model and r <= 1]
        text = f"Chosen automatically: the image looks like the {kind} images this model was trained on"
        if others:
            return text + f" (it also passed another model's check, less clearly: {', '.join(others)})."
        return text + "; the other models do not recognise it."


def route(predictors: Mapping[str, Predictor], image: ImageInput) -> Route:
    """Ask every model's rejection check about ``image`` (decoded once) and choose; models without a check are
    never chosen automatically (they would accept anything)."""
    rgb = load_image(image)
    predictions = {name: predictor.predict(rgb, tta=False) for name, predictor in predictors.items()}
    unusualness = {
        name: float("inf") if p.ood_score is None else p.ood_score for name, p in predictions.items()
    }
    closest = min(unusualness, key=unusualness.get)
    chosen = closest if unusualness[closest] <= 1 else None
    return Route(chosen, closest, unusualness, predictions)
