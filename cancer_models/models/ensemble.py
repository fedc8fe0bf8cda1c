"""Several trained models of one architecture served as one: the K models of a cross-validation run.

The ensemble's output is the log of its members' mean class probabilities, so everything that treats a model's
output as logits (temperature scaling, the threshold, conformal sets) works on the averaged probabilities
unchanged. Its CAM target layers are every member's, which pytorch-grad-cam averages: one map for the ensemble.
Out-of-distribution features are the members' features averaged. So that a folder of K members stays small, weights
are stored compressed (convolution and linear weights as int8 with one float32 scale per output channel, the rest
in float16) and used in float32; cross-validation records how far that moves the test probabilities.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from ._registry import build_from_config, register_model
from .base import CancerModel

_SCALE = ".int8_scale"  # beside each int8 tensor in model.safetensors: its per-output-channel scale


def member_config(config: ModelConfig) -> ModelConfig:
    """The config of each member of the ensemble ``config`` describes: its architecture at the ensemble's input."""
    args = config.model_args
    if not isinstance(args.get("member"), str) or args.get("member") == "ensemble":
        raise ConfigError("config field 'model_args' of an ensemble must name its members' architecture ('member')")
    if not isinstance(args.get("members"), int) or args["members"] < 2:
        raise ConfigError(f"config field 'model_args' of an ensemble needs 'members' >= 2, got {args.get('members')!r}")
    if not isinstance(args.get("member_args", {}), dict):
        raise ConfigError("config field 'model_args.member_args' must be an object")
    return ModelConfig(
        architecture=args["member"],
        model_args=dict(args.get("member_args", {})),
        labels=config.labels,
        input_size=config.input_size,
        mean=config.mean,
        std=config.std,
        colour_constancy=config.colour_constancy,
    )


INT8_MIN_ELEMENTS = 20_000


@register_model("ensemble")
class Ensemble(CancerModel):
    default_architecture = "ensemble"
    is_composite = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        member = member_config(config)
        self.members = nn.ModuleList(build_from_config(member) for _ in range(config.model_args["members"]))

    @classmethod
    def of(cls, members: Sequence[CancerModel]) -> Ensemble:
        """The ensemble of trained ``members`` (same architecture and input); its config starts from the first's,
        with temperature, threshold and calibration to be fitted for the ensemble."""
        first = members[0].config

        def shared(c: ModelConfig) -> tuple:
            return c.architecture, c.model_args, c.input_size, c.colour_constancy

        for m in members[1:]:
            if shared(m.config) != shared(first):
                raise ConfigError(
                    "ensemble members must share architecture, model_args, input_size and colour_constancy"
                )
        ensemble_config = dataclasses.replace(
            first,
            architecture="ensemble",
            model_args={"member": first.architecture, "member_args": first.model_args, "members": len(members)},
            cam_layers=[],
            temperature=1.0,
            threshold=0.5,
            ood=None,
            conformal=None,
            training={},
        )
        ensemble = cls(ensemble_config)
        for slot, member in zip(ensemble.members, members, strict=True):
            slot.load_state_dict(member.state_dict())
        ensemble.config.cam_layers = ensemble._member_layers(first.cam_layers)
        return ensemble.eval()

    def stored_state(self) -> dict[str, torch.Tensor]:
        stored = {}
        for name, value in self.state_dict().items():
            # The large conv and linear weights; the small ones (stem, squeeze-excitation, CBAM, head: 0.1 M of
            # cancer_cnn's 2.7 M) stay float16, which cut the largest change of a probability fivefold.
            if value.is_floating_point() and value.dim() >= 2 and value.numel() >= INT8_MIN_ELEMENTS:
                scale = value.abs().amax(dim=tuple(range(1, value.dim()))).float().clamp_min(1e-12) / 127
                shape = (-1,) + (1,) * (value.dim() - 1)
                stored[name] = (value / scale.view(shape)).round().to(torch.int8).contiguous()
                stored[name + _SCALE] = scale.contiguous()
            else:
                stored[name] = (value.half() if value.is_floating_point() else value).contiguous()
        return stored

    @classmethod
    def restored_state(cls, stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        state = {}
        for name, value in stored.items():
            if name.endswith(_SCALE):
                continue
            if name + _SCALE in stored:
                value = value.float() * stored[name + _SCALE].view((-1,) + (1,) * (value.dim() - 1))
            state[name] = value.float() if value.is_floating_point() else value
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).float().softmax(dim=1) for m in self.members]).mean(dim=0)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()

    def _member_layers(self, names: Sequence[str]) -> list[str]:
        return [f"members.{i}.{name}" for i in range(len(self.members)) for name in names]

    def default_cam_layers(self) -> list[str]:
        return self._member_layers(self.members[0].default_cam_layers())

    def cam_layer_candidates(self) -> list[list[str]]:
        return [self._member_layers(names) for names in self.members[0].cam_layer_candidates()]

    def _first_member_only(self) -> bool:
        # Folders fitted when the check used the first member's features keep doing so.
        return self.config.ood is not None and self.config.ood.features != "member mean"

    def ood_layers(self) -> list[nn.Module]:
        if self._first_member_only():
            return self.members[0].ood_layers()
        return [layer for member in self.members for layer in member.ood_layers()]

    def ood_features(self, pooled: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, list[int]]:
        """The ensemble's own features: its members' pooled features, averaged."""
        if self._first_member_only():
            return pooled, sizes
        members = len(self.members)
        # unflatten, not view(len(pooled), ...): an exported graph keeps its batch size free
        return pooled.unflatten(1, (members, -1)).mean(dim=1), sizes[: len(sizes) // members]
