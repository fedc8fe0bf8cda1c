"""Publish a model folder to a Hugging Face Hub model repo: the model (config.json, model.safetensors,
ood.safetensors, the README.md card with its metrics as Hub metadata), evaluations.json, plots, metrics and
history; never training checkpoints. Needs network and a token (``hf auth login`` or HF_TOKEN).

    cancer-models push runs/histopathology-cnn my-org/cancer-cnn-histopathology [--private] [--dry-run]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CancerModelsError, CheckpointError

HELP = "publish a model folder to the Hugging Face Hub"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="a trained model folder")
    parser.add_argument("repo_id", help="Hub model repo, e.g. my-org/cancer-cnn-histopathology")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--commit-message", default="Upload cancer_models model", help="commit message")
    parser.add_argument("--revision", default=None, help="branch to push to (created if missing)")
    parser.add_argument("--token", default=None, help="Hub token (default: the saved login or HF_TOKEN)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded and stop")


def run(args: argparse.Namespace) -> int:
    from huggingface_hub import get_token

    from ..inference.pretrained import load_pretrained
    from ..models.hub import MODEL_CARD_NAME, PUBLISH_EXCLUDE, files_to_publish, push_folder_to_hub

    try:
        load_pretrained(args.folder)  # refuse to publish anything that would not load
    except CancerModelsError as e:
        raise CheckpointError(f"{args.folder} is not a publishable model folder: {e}") from e
    if not (args.folder / MODEL_CARD_NAME).is_file():
        raise CheckpointError(f"{args.folder} has no {MODEL_CARD_NAME} model card")
    files = files_to_publish(args.folder)
    if args.dry_run:
        where = f"{'private' if args.private else 'public'}, revision {args.revision or 'main'}"
        print(f"would upload to {args.repo_id} ({where}):")
        for f in files:
            print(f"  {f.relative_to(args.folder)}  ({f.stat().st_size:,} bytes)")
        return 0
    token = args.token or get_token()
    if not token:
        raise CheckpointError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (or pass --token)")
    try:
        url = push_folder_to_hub(
            args.folder,
            args.repo_id,
            private=args.private,
            commit_message=args.commit_message,
            revision=args.revision,
            token=token,
            ignore_patterns=[f"{name}/**" for name in PUBLISH_EXCLUDE] + list(PUBLISH_EXCLUDE),
        )
    except Exception as e:  # network, auth and permission failures all end here, with their reason
        raise CheckpointError(f"upload to {args.repo_id} failed: {type(e).__name__}: {e}") from e
    print(f"published {len(files)} files: {url}")
    return 0
