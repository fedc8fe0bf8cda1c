"""Copy the publishable part of a training run into models/NAME (what the repo ships and the app loads).

    python scripts/export_model.py runs/histopathology-cancer-cnn

Copies config.json, the weights and the rejection detector, evaluations, metrics, history and plots, and renders the model card afresh from
the config; never checkpoints or logs. Refuses a folder that does not load. A model over the 15 MB budget
per shipped model goes to model_cards/NAME instead, without its weights: the card and metrics are kept in
the repo, the weights are published from the run folder with `cancer-models push`.
"""

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cancer_models import load_pretrained
from cancer_models.reporting.model_card import build_model_card

SHIPPED = [
    "config.json",
    "model.safetensors",
    "ood.safetensors",
    "evaluations.json",
    "README.md",
    "metrics.json",
    "history.csv",
    "plots",
]
MAX_BYTES = 15_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    model = load_pretrained(args.run)  # must load before it ships
    shipped, dest = SHIPPED, ROOT / "models" / args.run.name
    if sum(_size(args.run / name) for name in SHIPPED) > MAX_BYTES:
        shipped, dest = [n for n in SHIPPED if not n.endswith(".safetensors")], ROOT / "model_cards" / args.run.name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in shipped:
        src = args.run / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    build_model_card(model.config, model.card_metadata()).save(dest / "README.md")  # as this version renders it
    print(f"exported {args.run} -> {dest} ({_size(dest) / 1e6:.1f} MB)")


def _size(path: Path) -> int:
    files = [path] if path.is_file() else path.rglob("*")
    return sum(p.stat().st_size for p in files if p.is_file())


if __name__ == "__main__":
    main()
