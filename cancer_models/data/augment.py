"""Training augmentation: per-sample random transforms applied to whole batches on the training device.

Each transform draws its parameters for the whole batch with one call on the batch's device and applies them
with one batched op (a grid sample, a 3x3 colour matrix), so nothing waits on the GPU and nothing runs per
sample in Python. (kornia, which this replaced, drew parameters on the CPU and selected the samples to change
with masks, which makes the CPU wait for the GPU.)

Presets by modality: tissue tiles and dermoscopy photos have no 'up', so all 8 flips/rotations are fair;
an ultrasound image does (the transducer is at the top), so it only gets horizontal flips.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ITU-R BT.601 luma, the grey that saturation blends towards, as a matrix taking a pixel to its grey.
_GREY = torch.tensor([0.299, 0.587, 0.114]).expand(3, 3).clone()
# Cross-product matrix of the grey axis (1, 1, 1) / sqrt(3), for rotations about it.
_GREY_AXIS_CROSS = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / math.sqrt(3)
# Ruifrok & Johnston (2001) stain vectors for haematoxylin, eosin and DAB, as rows (skimage's rgb_from_hed).
RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
RGB_FROM_HED = RGB_FROM_HED / RGB_FROM_HED.norm(dim=1, keepdim=True)


def _uniform(size: int | tuple[int, ...], low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(size, device=like.device, dtype=like.dtype).uniform_(low, high)


def _coin(n: int, p: float, like: torch.Tensor) -> torch.Tensor:
    """Per sample, True with probability p."""
    return torch.rand(n, device=like.device) < p


class _Photometric(nn.Module):
    """A colour transform of the first three channels; any further ones (lesion masks) pass through unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 3:
            return self.recolour(x)
        return torch.cat([self.recolour(x[:, :3]), x[:, 3:]], dim=1)

    def recolour(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class RandomGeometry(nn.Module):
    """Random orientation, then (with probability p) a small affine warp, as one grid sample per batch.

    Orientation: a flip about ``flip`` ("horizontal": left-right, "vertical": up-down, for images whose left
    and right are fixed, such as a mammogram in canonical form), or with `all_orientations` any of the 8 flips
    and 90-degree rotations (a transposition is one of the three coin flips, so non-square images keep their
    flips only).
    Affine: rotation within +-degrees, translation within +-translate of the size, isotropic scale in
    `scale` (log-uniform, so zooming in 2x is as likely as zooming out 2x), x-shear within +-shear degrees;
    borders reflect. A sample left unwarped is resampled exactly at
    pixel centres, so its values are unchanged up to float rounding.
    """

    def __init__(
        self,
        all_orientations: bool = True,
        flip: str = "horizontal",
        degrees: float = 10.0,
        translate: float = 0.05,
        scale: tuple[float, float] = (0.9, 1.1),
        shear: float = 5.0,
        p: float = 0.5,
    ) -> None:
        super().__init__()
        if flip not in ("horizontal", "vertical"):
            raise ValueError(f"flip must be horizontal or vertical, got {flip!r}")
        self.all_orientations, self.flip, self.degrees, self.translate = all_orientations, flip, degrees, translate
        self.scale, self.shear, self.p = scale, shear, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        n, _, h, w = x.shape
        one = torch.ones(n, device=x.device)  # float32 for the matrix maths, whatever x's dtype

        # Orientation O as a map in centred pixel coordinates: flips negate an axis, a transposition swaps them.
        flips_x = self.all_orientations or self.flip == "horizontal"
        flips_y = self.all_orientations or self.flip == "vertical"
        sx = torch.where(_coin(n, 0.5, one), -one, one) if flips_x else one
        sy = torch.where(_coin(n, 0.5, one), -one, one) if flips_y else one
        swap = _coin(n, 0.5, one) & (h == w and self.all_orientations)
        orient = torch.diag_embed(torch.stack([sx, sy], 1))
        orient = torch.where(swap[:, None, None], orient.flip(-1), orient)

        # Affine A = translation after rotation * shear * scale; the identity where the coin says no.
        warp = _coin(n, self.p, one)
        angle = torch.deg2rad(_uniform(n, -self.degrees, self.degrees, one)) * warp
        tan = torch.tan(torch.deg2rad(_uniform(n, -self.shear, self.shear, one))) * warp
        log_zoom = _uniform(n, math.log(self.scale[0]), math.log(self.scale[1]), one)
        zoom = torch.where(warp, log_zoom.exp(), 1.0)
        shift = torch.stack([_uniform(n, -1, 1, one) * w, _uniform(n, -1, 1, one) * h], 1)
        shift = shift * self.translate * warp[:, None]

        # grid_sample wants, per output pixel, where to read: the inverse map (A O)^-1 = O^T shear^-1 rot^-1 / zoom,
        # then in grid_sample's [-1, 1] coordinates.
        cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(one)
        rot_inv = torch.stack([cos, sin, -sin, cos], 1).view(n, 2, 2)
        shear_inv = torch.stack([one, -tan, zero, one], 1).view(n, 2, 2)
        inverse = orient.mT @ shear_inv @ rot_inv / zoom[:, None, None]
        to_unit = torch.stack([one * (2 / w), one * (2 / h)], 1)  # built on the device: no host-to-GPU copy
        theta_linear = to_unit[:, :, None] * inverse / to_unit[:, None, :]
        theta_shift = -to_unit * (inverse @ shift[:, :, None]).squeeze(-1)
        theta = torch.cat([theta_linear, theta_shift[:, :, None]], 2).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class ColorJitter(_Photometric):
    """With probability p per image: brightness, contrast, saturation and hue, folded into one 3x3 matrix.

    Factors are drawn like torchvision's: brightness, contrast and saturation multipliers in [1 - v, 1 + v],
    hue a fraction of a turn in [-hue, hue]. Brightness scales; contrast scales about the image's mean grey;
    saturation blends each pixel with its grey; hue rotates colours about the grey axis (a linear stand-in for
    an HSV hue shift). All four are linear in RGB, so they compose into one matrix and one offset per image,
    applied in that order and clamped once, at the end.
    """

    def __init__(
        self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0, hue: float = 0.0, p: float = 1.0
    ) -> None:
        super().__init__()
        self.brightness, self.contrast, self.saturation, self.hue, self.p = brightness, contrast, saturation, hue, p
        # Constants live in buffers: a tensor built from Python values on a GPU costs a synchronising copy.
        self.register_buffer("grey", _GREY.clone(), persistent=False)
        self.register_buffer("grey_axis_cross", _GREY_AXIS_CROSS.clone(), persistent=False)

    def recolour(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) in [0, 1]
        n = x.shape[0]
        apply = _coin(n, self.p, x)
        grey, cross = self.grey.to(x.dtype), self.grey_axis_cross.to(x.dtype)

        def factor(v: float) -> torch.Tensor:
            return torch.where(apply, _uniform(n, 1 - v, 1 + v, x), 1.0)

        b, c, s = factor(self.brightness), factor(self.contrast), factor(self.saturation)
        angle = torch.where(apply, _uniform(n, -self.hue, self.hue, x), 0.0) * 2 * math.pi
        eye = torch.eye(3, device=x.device, dtype=x.dtype)
        saturate = s[:, None, None] * eye + (1 - s)[:, None, None] * grey
        matrix = _hue_rotation(angle, cross) @ saturate * (b * c)[:, None, None]
        # Contrast pulls toward the brightened image's mean grey; saturation and hue keep grey, so it adds as is.
        mean_grey = x.mean(dim=(2, 3)) @ grey[0]
        offset = ((1 - c) * b * mean_grey)[:, None, None]
        return torch.baddbmm(offset, matrix, x.flatten(2)).view_as(x).clamp_(0, 1)


def _hue_rotation(angle: torch.Tensor, axis_cross: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotations of RGB space about the grey axis (Rodrigues' formula); each keeps grey pixels grey."""
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    eye = torch.eye(3, device=angle.device, dtype=angle.dtype)
    outer = torch.full((3, 3), 1 / 3, device=angle.device, dtype=angle.dtype)  # k k^T for the unit grey axis k
    return cos * eye + sin * axis_cross + (1 - cos) * outer


class HEDJitter(_Photometric):
    """H&E stain augmentation: per image, scale and shift each stain's optical density (Tellez et al., 2018).

    torchstain's augmentors fit a stain matrix per image (Macenko), too slow per sample per epoch; this
    uses the fixed Ruifrok matrix, so the whole jitter is one 3x3 matrix and offset per image on the
    optical density: OD' = rgb_from_hed^T (alpha * (hed_from_rgb^T OD) + beta).
    """

    def __init__(self, sigma: float = 0.05, bias: float = 0.05, p: float = 0.5) -> None:
        super().__init__()
        self.sigma, self.bias, self.p = sigma, bias, p
        self.register_buffer("rgb_from_hed", RGB_FROM_HED.clone(), persistent=False)
        self.register_buffer("hed_from_rgb", torch.linalg.inv(RGB_FROM_HED), persistent=False)

    def recolour(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) in [0, 1]
        n = x.shape[0]
        apply = _coin(n, self.p, x)[:, None]
        alpha = torch.where(apply, _uniform((n, 3), 1 - self.sigma, 1 + self.sigma, x), 1.0)
        beta = torch.where(apply, _uniform((n, 3), -self.bias, self.bias, x), 0.0)
        to_rgb = self.rgb_from_hed.to(x.dtype).T
        # An image left alone gets the identity (to_rgb @ from_rgb = I), so it changes only by float rounding.
        matrix = to_rgb @ (alpha[:, :, None] * self.hed_from_rgb.to(x.dtype).T)
        offset = to_rgb @ beta[:, :, None]
        density = -torch.log(x.clamp_min(1e-6)).flatten(2)
        return torch.exp(-torch.baddbmm(offset, matrix, density)).view_as(x).clamp_(0, 1)


class GaussianBlur(_Photometric):
    """With probability p per image, a Gaussian blur with sigma drawn from ``sigma`` (in pixels): focus and
    scanner optics. One grouped separable convolution for the batch; a sample left alone gets a delta kernel."""

    def __init__(self, sigma: tuple[float, float] = (0.3, 1.5), p: float = 0.3) -> None:
        super().__init__()
        self.sigma, self.p = sigma, p
        self.radius = math.ceil(3 * sigma[1])

    def recolour(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W)
        n, c, h, w = x.shape
        sigma = torch.where(_coin(n, self.p, x), _uniform(n, *self.sigma, x), 1e-3)
        offsets = torch.arange(-self.radius, self.radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
        kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (N*C, K)
        y = F.pad(x.reshape(1, n * c, h, w), (self.radius,) * 4, mode="reflect")
        y = F.conv2d(y, kernel[:, None, None, :], groups=n * c)
        y = F.conv2d(y, kernel[:, None, :, None], groups=n * c)
        return y.view_as(x)


class RandomGamma(_Photometric):
    """With probability p per image, grey levels raised to a power drawn log-uniformly from ``gamma``: the
    exposure and processing curve of another X-ray system."""

    def __init__(self, gamma: tuple[float, float] = (0.7, 1.4), p: float = 0.5) -> None:
        super().__init__()
        self.gamma, self.p = gamma, p

    def recolour(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) in [0, 1]
        n = x.shape[0]
        exponent = _uniform(n, math.log(self.gamma[0]), math.log(self.gamma[1]), x).exp()
        exponent = torch.where(_coin(n, self.p, x), exponent, torch.ones_like(exponent))
        return x.clamp_min(0).pow(exponent.view(n, 1, 1, 1).to(x.dtype))


AUGMENTATIONS = {
    "none": list,
    "default": lambda: [RandomGeometry(), ColorJitter(0.15, 0.15, 0.1, 0.02, p=0.8)],
    # Other labs scan at other magnifications (2-3x), with other stains and optics.
    "histopathology": lambda: [
        RandomGeometry(scale=(0.5, 2.5), p=0.8),
        ColorJitter(0.15, 0.15, 0.1, 0.02, p=0.5),
        HEDJitter(sigma=0.1, bias=0.05, p=0.8),
        GaussianBlur(),
    ],
    # Another lab's stain: each stain's density scaled by up to 25% and shifted, and hue and saturation turned
    # further (Tellez et al., 2019: strong HED and HSV augmentation generalise best across centres).
    "histopathology_strong_stain": lambda: [
        RandomGeometry(scale=(0.5, 2.5), p=0.8),
        ColorJitter(0.2, 0.2, 0.3, 0.08, p=0.8),
        HEDJitter(sigma=0.25, bias=0.15, p=0.9),
        GaussianBlur(),
    ],
    "dermoscopy": lambda: [RandomGeometry(), ColorJitter(0.2, 0.2, 0.15, 0.03, p=0.8)],
    # Crops that move the lesion by up to a fifth of the image and zoom 0.7-1.4x, so that neither its position
    # nor its size in the frame (which differ between clinics' cameras) carries the label.
    "dermoscopy_moving": lambda: [
        RandomGeometry(degrees=30.0, translate=0.2, scale=(0.7, 1.4), p=0.9),
        ColorJitter(0.2, 0.2, 0.15, 0.03, p=0.8),
    ],
    "ultrasound": lambda: [RandomGeometry(all_orientations=False), ColorJitter(0.2, 0.2, 0.0, 0.0, p=0.8)],
    # Canonical mammograms have the chest wall on the left: flipped up-down only; grey levels, no colour.
    "mammography": lambda: [
        RandomGeometry(all_orientations=False, flip="vertical", degrees=7.0, scale=(0.9, 1.15)),
        ColorJitter(0.2, 0.2, 0.0, 0.0, p=0.8),
        RandomGamma(),
    ],
}


def build_augmentation(name: str) -> nn.Module:
    """A module mapping float [0, 1] batches to augmented float [0, 1] batches. Channels after the first three
    (lesion masks) move with the image and keep their values."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(AUGMENTATIONS)}")
    return nn.Sequential(*AUGMENTATIONS[name]())


def tta_views_for(augmentation: nn.Module) -> str:
    """The test-time views (``ModelConfig.tta_views``) a model trained with ``augmentation`` has seen:
    all 8 orientations, or the flips about one axis only."""
    geometry = [m for m in augmentation if isinstance(m, RandomGeometry)]
    if geometry and geometry[0].all_orientations:
        return "dihedral"
    return "vflip" if geometry and geometry[0].flip == "vertical" else "hflip"
