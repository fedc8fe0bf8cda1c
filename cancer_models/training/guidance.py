"""Mask-guided training ("right for the right reasons", Ross et al., 2017; attention supervision as in GAIN,
Li et al., 2018): where an image has a lesion mask, penalise the share of its Grad-CAM that falls outside it.

The map is the one the app shows: Grad-CAM of the image's true class at the model's CAM target layers, the
gradient taken with ``create_graph`` so the penalty trains the network. Images without a lesion in their mask
(no mask file, or a normal ultrasound) add nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

# Added to each max-scaled map before taking shares, so a map that is zero everywhere (a way to dodge the
# penalty) counts as uniform, i.e. as mostly outside the lesion.
_FLOOR = 0.01


@contextmanager
def tap_activations(layers: Sequence[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """While open, forward passes append the outputs of ``layers`` (graph attached) in layer order."""
    outputs: list[torch.Tensor] = []

    def keep(module: nn.Module, args, output: torch.Tensor) -> None:
        outputs.append(output)

    handles = [layer.register_forward_hook(keep) for layer in layers]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def outside_lesion_share(
    activations: Sequence[torch.Tensor], class_scores: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """Mean share of Grad-CAM heat outside the lesion over the images that have one (0 when none has).

    ``class_scores`` (N,) are the logits being explained, computed from ``activations``; ``masks`` (N, 1, H, W)
    in [0, 1].
    """
    has_lesion = (masks.flatten(1).amax(dim=1) > 0.5).float()  # a weight, not a selection: no wait on the GPU
    grads = torch.autograd.grad(class_scores.sum(), list(activations), create_graph=True)
    shares = []
    for activation, grad in zip(activations, grads, strict=True):
        cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * activation).sum(dim=1, keepdim=True)).float()
        cam = cam / cam.amax(dim=(2, 3), keepdim=True).clamp_min(1e-8) + _FLOOR
        lesion = F.adaptive_avg_pool2d(masks, cam.shape[-2:])  # each cell's lesion fraction
        shares.append(1 - (cam * lesion).sum(dim=(1, 2, 3)) / cam.sum(dim=(1, 2, 3)))
    return (torch.stack(shares).mean(dim=0) * has_lesion).sum() / has_lesion.sum().clamp_min(1)
