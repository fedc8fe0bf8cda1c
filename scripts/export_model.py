"""Copy the publishable part of a training run into models/NAME (what the repo ships and the app loads).

    python scripts/export_model.py runs/histopathology-cancer-cnn [--dest models]

Copies config.json, model.safetensors, metrics, history and plots, and renders the model card afresh from
the config; never checkpoints or logs. Refuses a folder that does not load, and one whose weights exceed the 15 MB budget per model.
"""

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cancer_models import load_pretrained  # noqa: E402
from cancer_models.model_card import render_model_card  # noqa: E402

SHIPPED = ["config.json", "model.safetensors", "README.md", "metrics.json", "history.csv", "plots"]
MAX_BYTES = 15_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / "models")
    args = parser.parse_args()
    model = load_pretrained(args.run)  # must load before it ships
    dest = args.dest / args.run.name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in SHIPPED:
        src = args.run / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    (dest / "README.md").write_text(render_model_card(model.config))  # the card as this version renders it
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    if size > MAX_BYTES:
        shutil.rmtree(dest)
        sys.exit(f"{args.run} is {size / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB budget for a shipped model")
    print(f"exported {args.run} -> {dest} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
