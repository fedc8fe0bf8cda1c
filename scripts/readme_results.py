"""Print the results table of the README and the documentation from the models' config.json files (so no
number is typed by hand): the shipped models in models/, and those too large to ship, in model_cards/.

    python scripts/readme_results.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cancer_models import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
# Data folder -> what it is.
DATA = {
    "histopathology": "LC25000 lung + colon H&E",
    "histopathology_glas": "GlaS colon H&E (tiles at 1.25 µm per pixel)",
    "dermoscopy": "ISIC (Kaggle benign/malignant)",
    "dermoscopy_multiclass": "HAM10000",
    "ultrasound": "BUSI breast ultrasound",
    "mammography": "RSNA screening mammograms (Kaggle re-release)",
}


def cell(m: dict, key: str) -> str:
    ci = m.get(f"{key}_ci")
    return f"{m[key]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{m[key]:.3f}"


def results_table(links: bool = True) -> str:
    """The table; ``links`` makes each model a link to its folder (in the README; the documentation site has none)."""
    lines = [
        "| model | data | test images (benign / malignant) | AUC | accuracy | sensitivity | specificity |",
        "|---|---|---|---|---|---|---|",
    ]
    for folder in sorted((ROOT / "models").iterdir()) + sorted((ROOT / "model_cards").glob("*/")):
        training = ModelConfig.load(folder / "config.json").training
        m = training.metrics["test"]
        folders = [Path(d).name for d in training.data]
        data = " + ".join(DATA.get(f, f) for f in folders)
        where = folder.relative_to(ROOT).as_posix()
        shipped = "" if (folder / "model.safetensors").is_file() else " (card only; weights not in the repo)"
        lines.append(
            (f"| [`{folder.name}`]({where})" if links else f"| `{folder.name}`")
            + f"{shipped} | {data} | {m['n']} ({m['n_benign']} / "
            f"{m['n_malignant']}) | "
            + " | ".join(cell(m, k) for k in ("auc", "accuracy", "sensitivity", "specificity"))
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(results_table(links="--no-links" not in sys.argv))
