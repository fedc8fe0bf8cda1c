"""Training augmentation, applied per sample to whole batches on the training device (kornia).

Presets by modality: tissue tiles and dermoscopy photos have no 'up', so all 8 flips/rotations are fair;
an ultrasound image does (the transducer is at the top), so it only gets horizontal flips.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

# Ruifrok & Johnston (2001) stain vectors for haematoxylin, eosin and DAB, as rows (skimage's rgb_from_hed).
_RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_RGB_FROM_HED = _RGB_FROM_HED / _RGB_FROM_HED.norm(dim=1, keepdim=True)


class HEDJitter(nn.Module):
    """H&E stain augmentation: per image, scale and shift each stain's optical density (Tellez et al., 2018).

    torchstain's augmentors fit a stain matrix per image (Macenko), too slow per sample per epoch; this
    uses the fixed Ruifrok matrix and is a few batched matrix products.
    """

    def __init__(self, sigma: float = 0.05, bias: float = 0.05, p: float = 0.5) -> None:
        super().__init__()
        self.sigma, self.bias, self.p = sigma, bias, p
        self.register_buffer("rgb_from_hed", _RGB_FROM_HED.clone(), persistent=False)
        self.register_buffer("hed_from_rgb", torch.linalg.inv(_RGB_FROM_HED), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) in [0, 1]
        n = x.shape[0]
        od = -torch.log(x.clamp_min(1e-6)).permute(0, 2, 3, 1)  # optical density, channels last
        hed = od @ self.hed_from_rgb.to(x.dtype)
        alpha = 1 + (torch.rand(n, 1, 1, 3, device=x.device, dtype=x.dtype) * 2 - 1) * self.sigma
        beta = (torch.rand(n, 1, 1, 3, device=x.device, dtype=x.dtype) * 2 - 1) * self.bias
        jittered = torch.exp(-((hed * alpha + beta) @ self.rgb_from_hed.to(x.dtype))).clamp(0, 1).permute(0, 3, 1, 2)
        apply = (torch.rand(n, 1, 1, 1, device=x.device) < self.p).to(x.dtype)
        return apply * jittered + (1 - apply) * x


def _geometry(all_orientations: bool) -> list[nn.Module]:
    flips: list[nn.Module] = [K.RandomHorizontalFlip()]
    if all_orientations:
        flips += [K.RandomVerticalFlip(), K.RandomRotation90(times=(0, 3), p=1.0)]
    return [
        *flips,
        K.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1), shear=5, padding_mode="reflection", p=0.5),
    ]


AUGMENTATIONS = {
    "none": list,
    "default": lambda: [*_geometry(True), K.ColorJitter(0.15, 0.15, 0.1, 0.02, p=0.8)],
    "histopathology": lambda: [*_geometry(True), K.ColorJitter(0.1, 0.1, 0.1, 0.02, p=0.5), HEDJitter()],
    "dermoscopy": lambda: [*_geometry(True), K.ColorJitter(0.2, 0.2, 0.15, 0.03, p=0.8)],
    "ultrasound": lambda: [*_geometry(False), K.ColorJitter(0.2, 0.2, 0.0, 0.0, p=0.8)],
}


def build_augmentation(name: str) -> nn.Module:
    """A module mapping float [0, 1] batches to augmented float [0, 1] batches."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(AUGMENTATIONS)}")
    return nn.Sequential(*AUGMENTATIONS[name]())
