"""Class activation maps through pytorch-grad-cam, for any model that names its target layers."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..config import CAM_METHODS
from ..models import CancerModel

__all__ = ["CAM_METHODS", "compute_cam", "overlay_heatmap"]


def compute_cam(
    model: CancerModel, input_tensor: torch.Tensor, class_index: int, method: str = "gradcam"
) -> np.ndarray:
    """CAM for one preprocessed image (1, 3, H, W) and class; float32 (H, W) scaled to [0, 1].

    Leaves the model in eval mode with no hooks and no parameter gradients behind.
    """
    # pytorch-grad-cam is imported on the first explanation: it loads OpenCV and matplotlib, seconds of
    # start-up that an app or a prediction-only caller need not pay.
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = getattr(pytorch_grad_cam, CAM_METHODS[method])
    # An input that requires grad makes the target activations require grad too, so gradient
    # methods also work when every backbone parameter is frozen.
    x = input_tensor.detach().clone().requires_grad_(True)
    with torch.enable_grad(), cam_class(model=model, target_layers=model.cam_target_layers()) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(class_index)])
    model.zero_grad(set_to_none=True)
    return np.nan_to_num(maps[0].astype(np.float32))


def overlay_heatmap(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a [0, 1] heatmap (jet colormap) over an RGB image; ``alpha`` is the heatmap's weight."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.asarray(image, dtype=np.float32) / 255.0
    return show_cam_on_image(rgb, heatmap, use_rgb=True, image_weight=1.0 - alpha)
