"""The Hub format of a model: ``config.json``, ``model.safetensors`` and ``evaluations.json`` in a folder or Hub repo.

Built on huggingface_hub's ``PyTorchModelHubMixin``. This layer saves and loads the weights and the config only;
the rest of a model folder (the rejection detector's ``ood.safetensors``, the ``README.md`` card) is written by
the step that fits or describes it (``reporting.model_folder.save_model_folder``) and read by
``inference.load_pretrained``. Loading is stricter than the mixin's: weights come only from safetensors (never
pickle), the config is validated, the weights must match the architecture exactly, and every failure is a
``CheckpointError`` or ``ConfigError`` that says what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from huggingface_hub import HfApi, ModelCardData, PyTorchModelHubMixin, hf_hub_download
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
from ..sources import is_hub_id

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
    # The rejection detector (trust.ood), attached by inference.load_pretrained or by calibration where
    # config.ood is set; this layer neither reads nor writes it.
    ood_detector: Any = None

    @classmethod
    def from_config(cls, config: ModelConfig) -> HubMixin:
        raise NotImplementedError

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
        """Write the validated ``config.json``, ``model.safetensors`` and ``evaluations.json`` into a folder.

        Unlike the mixin's, writes no card: a model folder's card and detector come from
        ``reporting.model_folder.save_model_folder``, which calls this first.

        Args:
            save_directory: the folder (created if missing).
            **kwargs: the mixin's options; pushing from here is refused (see ``push_to_hub``).
        """
        if kwargs.get("push_to_hub"):
            self.push_to_hub("")
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_pretrained(folder)

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

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Refused: a model alone would reach the Hub without its card (and its research-use warning) or its
        rejection detector. Save the folder and publish it whole with ``cancer-models push FOLDER REPO``
        (``push_folder_to_hub``)."""
        raise CheckpointError(
            "publish a saved model folder with `cancer-models push FOLDER REPO_ID` (push_folder_to_hub): "
            "it carries the model card and the rejection detector, which the model object alone does not"
        )

    def generate_model_card(self, *args: Any, **kwargs: Any) -> None:
        """Refused: the mixin's generic card would carry none of the model's figures, limits or research-use
        warning. A folder's card is ``reporting.model_card.build_model_card``'s, which ``save_model_folder``
        writes."""
        raise CheckpointError(
            "a model's card comes from cancer_models.reporting.model_card.build_model_card (written with the "
            "folder by cancer_models.reporting.model_folder.save_model_folder), not from the Hub mixin"
        )

    def card_metadata(self) -> ModelCardData:
        """The Hub metadata every card of this class carries (library, pipeline, tags), for the card writer."""
        return self._hub_mixin_info.model_card_data

    def stored_state(self) -> dict[str, torch.Tensor] | None:
        """The tensors written to model.safetensors when they differ from the state dict (e.g. compressed);
        ``restored_state`` undoes it. None: the state dict as it is."""
        return None

    @classmethod
    def restored_state(cls, stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return stored

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
        """Load the weights and config from a local folder or a Hub repo id, in eval mode; the rejection detector
        is attached by ``inference.load_pretrained``, which most callers want.

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
        config_file = resolve_file(model_id, CONFIG_NAME, **hub)
        config = ModelConfig.load(config_file)
        evaluations = _resolve_optional(model_id, EVALUATIONS_NAME, **hub)
        if evaluations is not None:
            config.training.evaluations.update(read_evaluations(evaluations.parent))
        weights_file = resolve_file(model_id, WEIGHTS_NAME, **hub)
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
        return model.to(map_location).eval()


def resolve_file(model_id: str, filename: str, **hub: Any) -> Path:
    """The local path of one file of a model folder or Hub repo (downloaded through the Hugging Face cache).

    Args:
        model_id: a local model folder or a Hub repo id.
        filename: the file's name in it.
        **hub: ``hf_hub_download``'s options (revision, cache_dir, token, local_files_only, force_download).

    Returns:
        The file's local path.

    Raises:
        CheckpointError: the folder or repo lacks the file, or the Hub cannot be reached; the message says which.
    """
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
    """``resolve_file`` for a file a model folder may lack: None where it has none, or where a Hub repo's copy is
    neither cached nor reachable (the model works without it)."""
    try:
        return resolve_file(model_id, filename, **hub)
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
