"""The custom CNN: residual+SE blocks around an Inception-style module with CBAM attention.

Stages (spatial stride in brackets)::

    stem        conv3x3 s2, conv3x3, maxpool             [/4]
    stage 2     residual block with squeeze-and-excitation [/8]
    stage 3     Inception module (1x1, 3x3, 5x5 as two 3x3, pool) + CBAM, maxpool [/16]
    stage 4     two residual+SE blocks                    [/32]
    head        global average pool, dropout, dense, dropout, dense -> 2 logits

About 2.5 M parameters; fully convolutional up to the pooling, so any input of 32 px or more works.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ._registry import register_model
from .base import CancerModel, dense_head


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class SqueezeExcite(nn.Module):
    """Channel gating from globally pooled statistics (Hu et al., 2018)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ResidualSEBlock(nn.Module):
    """Basic residual block (two 3x3 convs) with SE on the residual branch."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_ch, out_ch, 3, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch))
        self.se = SqueezeExcite(out_ch)
        if stride == 1 and in_ch == out_ch:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        self.act = nn.ReLU()  # not in-place: this output is what Grad-CAM hooks on the last block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.conv2(self.conv1(x))) + self.shortcut(x))


class InceptionModule(nn.Module):
    """Parallel 1x1, 3x3, 5x5 (as two stacked 3x3) and pooling branches, concatenated."""

    def __init__(
        self, in_ch: int, ch1x1: int, ch3x3_reduce: int, ch3x3: int, ch5x5_reduce: int, ch5x5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.branch1 = conv_bn_relu(in_ch, ch1x1, 1)
        self.branch3 = nn.Sequential(conv_bn_relu(in_ch, ch3x3_reduce, 1), conv_bn_relu(ch3x3_reduce, ch3x3, 3))
        self.branch5 = nn.Sequential(
            conv_bn_relu(in_ch, ch5x5_reduce, 1),
            conv_bn_relu(ch5x5_reduce, ch5x5, 3),
            conv_bn_relu(ch5x5, ch5x5, 3),
        )
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_bn_relu(in_ch, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel, then spatial attention."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


@register_model("cancer_cnn")
class CancerCNN(CancerModel):
    default_architecture = "cancer_cnn"

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        args = self.model_args(num_classes=2, drop_rate=0.5, head_drop_rate=0.3, head_hidden=256)
        self.stem = nn.Sequential(conv_bn_relu(3, 32, 3, stride=2), conv_bn_relu(32, 64, 3), nn.MaxPool2d(3, 2, 1))
        self.stage2 = ResidualSEBlock(64, 128, stride=2)
        inception = InceptionModule(128, 64, 96, 128, 32, 32, 32)
        self.stage3 = nn.Sequential(inception, CBAM(inception.out_channels), nn.MaxPool2d(2))
        self.stage4 = nn.Sequential(
            ResidualSEBlock(inception.out_channels, 240, stride=2),
            ResidualSEBlock(240, 240),
        )
        self.num_features = 240
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head = dense_head(
            self.num_features, args.head_hidden, args.drop_rate, args.head_drop_rate, args.num_classes
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero-init the last BN of each residual branch so every block starts as an identity-ish map.
        for m in self.modules():
            if isinstance(m, ResidualSEBlock):
                nn.init.zeros_(m.conv2[1].weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage4(self.stage3(self.stage2(self.stem(x))))

    def default_cam_layers(self) -> list[str]:
        return ["stage4.1"]

    def cam_layer_candidates(self) -> list[list[str]]:
        # At 128 px: stage4 is 4x4, stage3 8x8 (after its pooling; 16x16 before, in its CBAM), stage2 16x16.
        return [["stage4.1"], ["stage4.0"], ["stage3"], ["stage3.1"], ["stage2"], ["stage3", "stage4.1"]]

    def ood_layers(self) -> list[nn.Module]:
        return [self.stage2, self.stage3]
