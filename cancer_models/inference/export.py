"""Export a model for deployment without this package (``cancer-models export``).

The ONNX graph takes ``image``: float32 (N, 3, S, S), RGB on the 0-255 scale, already resized to the model's
input size S; it applies the model's colour constancy, mean/std normalisation, the network (an ensemble's
members averaged in one graph) and its temperature, and returns ``probabilities`` (N, 2; benign, malignant)
and ``features`` (N, D), the pooled mid-level features the rejection check measures. The batch size is
dynamic. Everything else a user needs is in the file's metadata (``metadata_props``): the resize to apply
(antialiased bilinear to S x S), labels, decision threshold, prediction-set level and quantiles, the rejection
limits (the detector's means and precisions stay in ``ood.safetensors``) and the test-time views.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from ..models import CancerModel
from ..models.preprocessing import model_input
from ..trust.features import tap_features

OPSET = 17


class Deployable(nn.Module):
    """A model with its preprocessing and temperature: uint8-scale image in, probabilities and features out."""

    def __init__(self, model: CancerModel) -> None:
        super().__init__()
        self.model = model.eval()
        self.config = model.config

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with tap_features(self.model.ood_layers()) as tapped:
            logits = self.model(model_input(image, self.config))
        features, _ = self.model.ood_features(tapped[0], tapped.sizes)
        return (logits.float() / self.config.temperature).softmax(dim=1), features


def metadata(model: CancerModel) -> dict[str, str]:
    """What a user of the exported graph needs besides the graph, as ONNX metadata (strings)."""
    c = model.config
    return {
        "producer": "cancer-models",
        "labels": json.dumps(list(c.labels)),
        "input": json.dumps(
            {
                "name": "image",
                "layout": "NCHW",
                "channels": "RGB",
                "scale": "0-255 float32",
                "size": c.input_size,
                "resize": "antialiased bilinear to size x size (as PIL or torchvision resize)",
                "in_graph": f"colour constancy ({c.colour_constancy}), mean {list(c.mean)} and std {list(c.std)} on "
                f"the 0-1 scale, temperature {c.temperature:.6g}",
            }
        ),
        "threshold": json.dumps(c.threshold),
        "temperature": json.dumps(c.temperature),
        "tta_views": c.tta_views,
        "conformal": json.dumps(c.conformal and c.conformal.to_dict()),
        "ood": json.dumps(c.ood and c.ood.to_dict()),
        "architecture": c.architecture
        + (
            f" ({c.model_args.get('members')} x {c.model_args.get('member')}, averaged in the graph)"
            if c.architecture == "ensemble"
            else ""
        ),
        "research_use_only": "Research software, not a medical device. Not for diagnosis.",
    }


def export_onnx(model: CancerModel, out: str | Path) -> Path:
    """Write a model as an ONNX graph with a dynamic batch and everything a runtime needs in its metadata.

    Args:
        model: the model; its normalisation, colour constancy and temperature go into the graph.
        out: the .onnx file to write.

    Returns:
        ``out``. The graph takes uint8-valued float images (N, 3, S, S) and gives probabilities and the
        rejection check's features; the threshold, prediction-set and rejection settings are in its metadata.
    """
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, 3, model.config.input_size, model.config.input_size) * 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its successor
        torch.onnx.export(
            Deployable(model),
            (example,),
            str(out),
            input_names=["image"],
            output_names=["probabilities", "features"],
            dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}, "features": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    graph = onnx.load(str(out))
    for key, value in metadata(model).items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(out))
    return out
