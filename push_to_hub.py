"""Publish a training output folder to a Hugging Face Hub model repo.

    python push_to_hub.py runs/histopathology-cnn my-org/cancer-cnn-histopathology [--private] [--dry-run]

Uploads the model (config.json, model.safetensors, README.md model card with its metrics as Hub metadata),
plots, metrics and history; never checkpoints. Needs network and a token (`hf auth login` or HF_TOKEN).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from huggingface_hub import get_token

from cancer_models import CheckpointError, ConfigError, load_pretrained
from cancer_models.hub import MODEL_CARD_NAME, push_folder_to_hub

# What a training run leaves that must not be published: resumable state and duplicate weights.
EXCLUDE = ("checkpoint", "checkpoint.tmp", "checkpoint.old", "best.safetensors", "best.safetensors.tmp")


def files_to_upload(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] not in EXCLUDE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="output folder of train.py (or any save_pretrained folder)")
    parser.add_argument("repo_id", help="Hub model repo, e.g. my-org/cancer-cnn-histopathology")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--commit-message", default="Upload cancer_models model", help="commit message")
    parser.add_argument("--revision", default=None, help="branch to push to (created if missing)")
    parser.add_argument("--token", default=None, help="Hub token (default: the saved login or HF_TOKEN)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded and stop")
    args = parser.parse_args(argv)

    try:
        load_pretrained(args.folder)  # refuse to publish anything that would not load
    except (CheckpointError, ConfigError) as e:
        print(f"error: {args.folder} is not a publishable model folder: {e}", file=sys.stderr)
        return 2
    if not (args.folder / MODEL_CARD_NAME).is_file():
        print(f"error: {args.folder} has no {MODEL_CARD_NAME} model card", file=sys.stderr)
        return 2

    files = files_to_upload(args.folder)
    if args.dry_run:
        print(
            f"would upload to {args.repo_id} ({'private' if args.private else 'public'}, revision {args.revision or 'main'}):"
        )
        for f in files:
            print(f"  {f.relative_to(args.folder)}  ({f.stat().st_size:,} bytes)")
        return 0

    token = args.token or get_token()
    if not token:
        print("error: no Hugging Face token: run `hf auth login` or set HF_TOKEN (or pass --token)", file=sys.stderr)
        return 2
    try:
        url = push_folder_to_hub(
            args.folder,
            args.repo_id,
            private=args.private,
            commit_message=args.commit_message,
            revision=args.revision,
            token=token,
            ignore_patterns=[f"{name}/**" for name in EXCLUDE] + list(EXCLUDE),
        )
    except Exception as e:  # network, auth and permission failures all end here, with their reason
        print(f"error: upload to {args.repo_id} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"published {len(files)} files: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
