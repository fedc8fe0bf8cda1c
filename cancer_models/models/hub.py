"""The Hub format: a folder (or Hub repo) with ``config.json``, ``model.safetensors`` and ``README.md``.

Built on huggingface_hub's ``PyTorchModelHubMixin``, which gives every model ``save_pretrained`` and
``push_to_hub``. Loading is stricter than the mixin's: weights come only from safetensors (never pickle),
the config is validated, the weights must match the architecture exactly, and every failure is a
``CheckpointError`` or ``ConfigError`` that says what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from huggingface_hub import HfApi, ModelCard, PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, save_model
from typing_extensions import Self

from ..config import ModelConfig
from ..errors import CheckpointError, ConfigError
from ..record import EVALUATIONS_NAME, read_evaluations, write_evaluations
from ..reporting.model_card import build_model_card
from ..sources import is_hub_id
from ..trust.ood import OOD_WEIGHTS_NAME, MahalanobisDetector

if TYPE_CHECKING:
    from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
LIBRARY_NAME = "cancer-models"

T = TypeVar("T", bound="HubMixin")


class HubMixin(
    PyTorchModelHubMixin,
    library_name=LIBRARY_NAME,
    pipeline_tag="image-classification",
    tags=["pytorch", "medical-imaging"],
):
    """Hub methods for a module that carries a validated ``config`` (a ``ModelConfig``)."""

    config: ModelConfig
    # Out-of-distribution statistics (ood.safetensors), present when config.ood is set.
    ood_detector: MahalanobisDetector | None = None

    @classmethod
    def from_config(cls, config: ModelConfig) -> HubMixin:
        raise NotImplementedError

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> str | None:
        # The mixin keeps an existing README.md; ours is always the card of the config being saved.
        (Path(save_directory) / MODEL_CARD_NAME).unlink(missing_ok=True)
        return super().save_pretrained(save_directory, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        self.config.validate()
        self.config.save(save_directory / CONFIG_NAME)
        write_evaluations(save_directory, self.config.training.evaluations)
        # save_model (not save_file) resolves shared tensors; metadata marks the framework for the Hub.
        stored = self.stored_state()
        if stored is None:
            save_model(self, str(save_directory / WEIGHTS_NAME), metadata={"format": "pt"})
        else:
            save_file(stored, str(save_directory / WEIGHTS_NAME), metadata={"format": "pt"})
        if (self.config.ood is None) != (self.ood_detector is None):
            raise ConfigError("config.ood and the model's ood_detector must be set together")
        if self.ood_detector is not None:
            self.ood_detector.save(save_directory / OOD_WEIGHTS_NAME)

    def stored_state(self) -> dict[str, torch.Tensor] | None:
        """The tensors written to model.safetensors when they differ from the state dict (e.g. compressed);
        ``restored_state`` undoes it. None: the state dict as it is."""
        return None

    @classmethod
    def restored_state(cls, stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return stored

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        return build_model_card(self.config, self._hub_mixin_info.model_card_data)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        map_location: str | torch.device = "cpu",
    ) -> Self:
        """Load from a local folder or a Hub repo id, in eval mode (see ``load_pretrained``).

        Replaces the mixin's version, which reads the config before ``_from_pretrained`` and lets a
        missing file through as a log line or a bare ``huggingface_hub`` error.
        """
        return cls._from_pretrained(
            model_id=str(pretrained_model_name_or_path),
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            map_location=map_location,
        )

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str | torch.device = "cpu",
        strict: bool = True,
    ) -> Self:
        hub = {
            "revision": revision,
            "cache_dir": cache_dir,
            "token": token,
            "local_files_only": local_files_only,
            "force_download": force_download,
        }
        config_file = _resolve(model_id, CONFIG_NAME, **hub)
        config = ModelConfig.load(config_file)
        evaluations = _resolve_optional(model_id, EVALUATIONS_NAME, **hub)
        if evaluations is not None:
            config.training.evaluations.update(read_evaluations(evaluations.parent))
        weights_file = _resolve(model_id, WEIGHTS_NAME, **hub)
        # Never fetch ImageNet weights for a model whose trained weights we are about to load.
        config.model_args = {k: v for k, v in config.model_args.items() if k != "pretrained_backbone"}
        try:
            model = cls.from_config(config)
        except ConfigError as e:
            raise ConfigError(f"{config_file}: {e}") from e
        if not isinstance(model, cls):
            raise TypeError(f"{model_id} holds a {type(model).__name__}, not a {cls.__name__}")
        try:
            state = load_file(weights_file, device=str(map_location))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{weights_file} is not a readable safetensors file: {e}") from e
        state = model.restored_state(state)
        check_state_dict(model, state, weights_file)
        model.load_state_dict(state, strict=strict)
        if config.ood is not None:
            ood_file = _resolve(model_id, OOD_WEIGHTS_NAME, **hub)
            try:
                model.ood_detector = MahalanobisDetector.load(ood_file)
            except (SafetensorError, OSError, KeyError) as e:
                raise CheckpointError(f"{ood_file} is not a readable out-of-distribution file: {e}") from e
        return model.to(map_location).eval()


def _resolve(model_id: str, filename: str, **hub) -> Path:
    """The local path of ``filename`` of a model folder or Hub repo, or a CheckpointError saying why not."""
    local = Path(model_id)
    if local.is_dir():
        path = local / filename
        if not path.is_file():
            hint = (
                " (pickle checkpoints are not loaded; convert them to safetensors)" if filename == WEIGHTS_NAME else ""
            )
            raise CheckpointError(f"{local} has no {filename}{hint}")
        return path
    if not is_hub_id(model_id):
        raise CheckpointError(
            f"{model_id} is not a model folder (expected a directory with {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    try:
        return Path(hf_hub_download(model_id, filename, library_name=LIBRARY_NAME, **hub))
    except HFValidationError as e:
        raise CheckpointError(f"{model_id!r} is neither a local folder nor a valid Hub repo id") from e
    except RepositoryNotFoundError as e:
        raise CheckpointError(f"Hub repo {model_id} not found (or it is private and no token was given)") from e
    except RevisionNotFoundError as e:
        raise CheckpointError(f"Hub repo {model_id} has no revision {hub['revision']!r}") from e
    except LocalEntryNotFoundError as e:
        raise CheckpointError(
            f"{filename} of {model_id} is not in the Hugging Face cache and the Hub cannot be reached "
            f"(offline?). Download it once with network, or pass a local folder."
        ) from e
    except EntryNotFoundError as e:
        raise CheckpointError(f"Hub repo {model_id} has no {filename}") from e


def _resolve_optional(model_id: str, filename: str, **hub) -> Path | None:
    """``_resolve`` for a file a model folder may lack: None where it has none, or where a Hub repo's copy is
    neither cached nor reachable (the model works without it)."""
    try:
        return _resolve(model_id, filename, **hub)
    except CheckpointError:
        return None


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Raise a CheckpointError naming the missing, unexpected and mis-shaped tensors, if any."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} with the wrong shape (e.g. {'; '.join(wrong_shape[:3])})")
    if problems:
        config = model.config
        raise CheckpointError(
            f"weights in {source} do not fit architecture {config.architecture!r} with {config.model_args}: "
            + "; ".join(problems)
        )


# What a training run leaves that must not be published: resumable state and duplicate weights.
PUBLISH_EXCLUDE = ("checkpoint", "checkpoint.tmp", "checkpoint.old", "best.safetensors", "best.safetensors.tmp")


def files_to_publish(folder: Path) -> list[Path]:
    """The files of a model folder that ``push_folder_to_hub`` uploads."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] not in PUBLISH_EXCLUDE)


def push_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str = "Upload model",
    revision: str | None = None,
    token: str | None = None,
    ignore_patterns: list[str] | None = None,
) -> str:
    """Upload a saved model folder with everything beside it (plots, metrics) to a Hub model repo, created if
    missing; returns the commit URL. ``model.push_to_hub`` uploads the model alone."""
    api = HfApi(token=token, library_name=LIBRARY_NAME)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        revision=revision,
        repo_type="model",
        ignore_patterns=ignore_patterns,
    )
    return str(info.commit_url)
