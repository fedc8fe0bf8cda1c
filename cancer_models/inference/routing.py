"""Which model is an image for? Every model's own rejection check decides.

Each model says how unusual the image is for it, as a multiple of its limit (``Prediction.ood_score``; above 1
it refuses the image). The image goes to the model that accepts it with the most room to spare; when every
model refuses it, it is none of the supported kinds, and the nearest one is named only as the closest. A DICOM
file's Modality counts first: a model for another modality is never the closest while one for the file's
modality (or one that the Modality does not rule out) is there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..config import ModelConfig
from ..data.images import ImageInput, load_image
from .predict import Prediction, Predictor


@dataclass(frozen=True)
class Route:
    model: str | None  # the chosen model's name; None when every model refuses the image
    closest: str  # the model with the lowest unusualness, chosen or not
    unusualness: dict[str, float]  # each model's unusualness for the image (1 is its limit)
    predictions: dict[str, Prediction]  # each model's prediction, without test-time views

    def reason(self, modality: Mapping[str, str] | None = None) -> str:
        """One sentence for a person on why this model was chosen, or why none was.

        Args:
            modality: each model's kind of image by name, to say "a dermoscopy image" rather than a model name.

        Returns:
            The sentence, with the unusualness that decided it.
        """
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
    """Ask every model's rejection check about ``image`` (decoded once) and choose.

    Args:
        predictors: the models to choose among, by name.
        image: anything ``load_image`` reads.

    Returns:
        The ``Route``: the least unusual model that accepts the image, or none (models without a check are never
        chosen automatically: they would accept anything; models its DICOM Modality rules out come last).
    """
    return route_many(predictors, [image])[0]


def route_many(predictors: Mapping[str, Predictor], images: Sequence[ImageInput]) -> list[Route]:
    """``route`` for many images: each decoded once, each model's check run over them in batches.

    Args:
        predictors: the models to choose among, by name.
        images: anything ``load_image`` reads.

    Returns:
        One ``Route`` per image, in order.
    """
    decoded = [load_image(image) for image in images]
    answers = {name: predictor.predict(decoded, tta=False) for name, predictor in predictors.items()}
    return [_choose({name: answers[name][i] for name in predictors}) for i in range(len(decoded))]


def _choose(predictions: dict[str, Prediction]) -> Route:
    unusualness = {name: float("inf") if p.ood_score is None else p.ood_score for name, p in predictions.items()}
    # Models the file's DICOM Modality rules out come last, whatever their image check says.
    allowed = [name for name, p in predictions.items() if p.refused_because is None] or list(predictions)
    closest = min(allowed, key=unusualness.get)
    chosen = closest if unusualness[closest] <= 1 else None
    return Route(chosen, closest, unusualness, predictions)


# An image this many times the model's training tile (its longer side) is a field, not a tile.
LARGE_IMAGE_TILES = 2.5

# The columns of one answer as a table row: the command line's CSV and the app's batch table.
ROW_COLUMNS = ["file", "model", "decision", "p_malignant", "threshold", "prediction_set", "unusualness", "error"]


@dataclass(frozen=True)
class Answer:
    """One image's answer from a set of models: who answered (or, when all refused, who came closest) and what."""

    model: str | None  # the model that answered; None when every model refused the image
    closest: str  # the model that answered, or the least unusual one when all refused
    prediction: Prediction  # the answering (or closest) model's prediction, with test-time views when asked for
    route: Route | None = None  # how the model was chosen; None when there was only one to ask
    size: tuple[int, int] | None = None  # the image's width and height as read

    def large_image_note(self, config: ModelConfig) -> str | None:
        """A sentence for an answered image far larger than the tiles the model (``config``) was trained on: it
        was judged as one tile, shrunk; None otherwise.

        Args:
            config: the answering model's config.

        Returns:
            The note, or None.
        """
        tile = config.tile.size if config.tile else None
        if self.size is None or not tile or max(self.size) < LARGE_IMAGE_TILES * tile:
            return None
        if self.prediction.refused_because is not None or not self.prediction.in_distribution:
            return None
        w, h = self.size
        return (
            f"This image is {w}x{h} pixels; the model was trained on tiles of about {tile} pixels and looks at the "
            f"whole image shrunk to {config.input_size}x{config.input_size} as one tile. A large field or a slide is "
            "classified tile by tile at the model's scale (cancer-models slides, or the app's Large image / slide tab)."
        )

    @property
    def model_column(self) -> str:
        """Who answered, for a table: the model, or ``none (closest: NAME)`` so a refusal's figure has an owner."""
        return self.model if self.model is not None else f"none (closest: {self.closest})"

    def row(self, file: str) -> dict[str, str]:
        """The answer as one table row. A refused image has a decision and an unusualness but no probability,
        threshold or set: there is nothing to read into them.

        Args:
            file: the file name to show in the row.

        Returns:
            The row's cells as text, keyed by ``ROW_COLUMNS``.
        """
        p = self.prediction
        answered = p.in_distribution
        return {
            "file": file,
            "model": self.model_column,
            "decision": p.decision,
            "p_malignant": f"{p.malignant_probability:.4f}" if answered else "",
            "threshold": f"{p.threshold:.4f}" if answered else "",
            "prediction_set": "+".join(p.prediction_set) if answered and p.prediction_set else "",
            "unusualness": "" if p.ood_score is None else f"{p.ood_score:.2f}",
            "error": p.refused_because or "",
        }


def answer(predictors: Mapping[str, Predictor], image: ImageInput, tta: bool = False) -> Answer:
    """Answer ``image`` with the one model given, or route it and answer with the chosen model.

    Args:
        predictors: one model (asked directly) or several (the image is routed, ``route``), by name.
        image: anything ``load_image`` reads.
        tta: average test-time views, run only for the model that answers.

    Returns:
        The ``Answer``: who answered (or came closest when all refused) and its prediction.
    """
    rgb = load_image(image)
    if len(predictors) == 1:
        ((name, predictor),) = predictors.items()
        prediction = predictor.predict(rgb, tta=tta)
        return Answer(name if prediction.in_distribution else None, name, prediction, size=rgb.size)
    chosen = route(predictors, rgb)
    if chosen.model is None:
        return Answer(None, chosen.closest, chosen.predictions[chosen.closest], chosen, rgb.size)
    prediction = predictors[chosen.model].predict(rgb, tta=True) if tta else chosen.predictions[chosen.model]
    return Answer(chosen.model, chosen.model, prediction, chosen, rgb.size)
