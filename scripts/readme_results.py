"""Print the README's results table from the models' config.json files (so no number is typed by hand): the
shipped models in models/, and those too large to ship, whose cards are in model_cards/.

    python scripts/readme_results.py
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Data folder -> what it is.
DATA = {
    "histopathology": "LC25000 lung + colon H&E",
    "dermoscopy": "ISIC (Kaggle benign/malignant)",
    "dermoscopy_multiclass": "HAM10000",
    "ultrasound": "BUSI breast ultrasound",
}


def cell(m: dict, key: str) -> str:
    ci = m.get(f"{key}_ci")
    return f"{m[key]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{m[key]:.3f}"


def results_table() -> str:
    lines = [
        "| model | data | test images (benign / malignant) | AUC | accuracy | sensitivity | specificity |",
        "|---|---|---|---|---|---|---|",
    ]
    for folder in sorted((ROOT / "models").iterdir()) + sorted((ROOT / "model_cards").glob("*/")):
        config = json.loads((folder / "config.json").read_text())
        m = config["training"]["metrics"]["test"]
        folders = [Path(d.strip()).name for d in config["training"]["data"].split(",")]
        data = " + ".join(DATA.get(f, f) for f in folders)
        where = folder.relative_to(ROOT).as_posix()
        shipped = "" if (folder / "model.safetensors").is_file() else " (card only; weights not in the repo)"
        lines.append(
            f"| [`{folder.name}`]({where}){shipped} | {data} | {m['n']} ({m['n_benign']} / "
            f"{m['n_malignant']}) | "
            + " | ".join(cell(m, k) for k in ("auc", "accuracy", "sensitivity", "specificity"))
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(results_table())
