"""The Hub format: a folder (or Hub repo) with ``config.json``, ``model.safetensors`` and ``README.md``.

The layout matches huggingface_hub's ``PyTorchModelHubMixin``, but loading is stricter than the
mixin: weights come only from safetensors (never pickle), the config is validated, and the weights
must match the architecture exactly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model

from .config import ConfigError, ModelConfig
from .model_card import render_model_card
from .models import CancerModel, build_from_config

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
LIBRARY_NAME = "cancer-models"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreachable or does not fit its architecture."""


def save_pretrained(model: CancerModel, save_directory: str | Path, model_card: str | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and a model card into ``save_directory``."""
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    model.config.validate()
    model.config.save(out / CONFIG_NAME)
    # save_model (not save_file) resolves shared tensors; metadata marks the framework for the Hub.
    save_model(model, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    (out / MODEL_CARD_NAME).write_text(model_card if model_card is not None else render_model_card(model.config))
    return out


def load_pretrained(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> CancerModel:
    """Load any cancer_models checkpoint from a local folder or a Hub repo id, in eval mode.

    A repo id goes through the Hugging Face cache, so it also works offline (``HF_HUB_OFFLINE=1``)
    once downloaded; ``local_files_only=True`` never touches the network.
    """
    hub = {"revision": revision, "cache_dir": cache_dir, "token": token, "local_files_only": local_files_only}
    config_file = _resolve(name_or_path, CONFIG_NAME, **hub)
    config = ModelConfig.load(config_file)
    weights_file = _resolve(name_or_path, WEIGHTS_NAME, **hub)
    # Never fetch ImageNet weights for a model whose trained weights we are about to load.
    if config.model_args.get("pretrained_backbone"):
        config.model_args = {**config.model_args, "pretrained_backbone": False}
    try:
        model = build_from_config(config)
    except ValueError as e:
        raise ConfigError(f"{config_file}: {e}") from e
    try:
        state = load_file(weights_file, device=str(device))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights_file} is not a readable safetensors file: {e}") from e
    _check_state_dict(model, state, weights_file)
    model.load_state_dict(state)
    return model.to(device).eval()


def _resolve(name_or_path: str | Path, filename: str, *, revision, cache_dir, token, local_files_only) -> Path:
    local = Path(name_or_path)
    if local.is_dir():
        path = local / filename
        if not path.is_file():
            hint = (
                " (pickle checkpoints are not loaded; convert them to safetensors)" if filename == WEIGHTS_NAME else ""
            )
            raise CheckpointError(f"{local} has no {filename}{hint}")
        return path
    text = str(name_or_path)
    # Hub ids are "name" or "owner/name"; anything else that is not a folder is a bad local path.
    if local.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise CheckpointError(
            f"{text} is not a model folder (expected a directory with {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    try:
        return Path(
            hf_hub_download(
                str(name_or_path),
                filename,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
                library_name=LIBRARY_NAME,
            )
        )
    except HFValidationError as e:
        raise CheckpointError(f"{name_or_path!r} is neither a local folder nor a valid Hub repo id") from e
    except RepositoryNotFoundError as e:
        raise CheckpointError(f"Hub repo {name_or_path} not found (or it is private and no token was given)") from e
    except RevisionNotFoundError as e:
        raise CheckpointError(f"Hub repo {name_or_path} has no revision {revision!r}") from e
    except LocalEntryNotFoundError as e:
        raise CheckpointError(
            f"{filename} of {name_or_path} is not in the Hugging Face cache and the Hub cannot be reached "
            f"(offline?). Download it once with network, or pass a local folder."
        ) from e
    except EntryNotFoundError as e:
        raise CheckpointError(f"Hub repo {name_or_path} has no {filename}") from e


def _check_state_dict(model: CancerModel, state: dict[str, torch.Tensor], source: Path) -> None:
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
        raise CheckpointError(
            f"weights in {source} do not fit architecture {model.config.architecture!r} with {model.config.model_args}: "
            + "; ".join(problems)
        )


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
    """Upload a saved model folder to a Hub model repo (created if missing); returns the commit URL."""
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


def push_to_hub(model: CancerModel, repo_id: str, **kwargs) -> str:
    """Save ``model`` to a temporary folder and upload it (see ``push_folder_to_hub``)."""
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp)
        return push_folder_to_hub(tmp, repo_id, **kwargs)
