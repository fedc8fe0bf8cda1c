"""Print the README's results table from the shipped models' metrics.json files (so no number is typed by hand).

    python scripts/readme_results.py
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = {
    "histopathology": "LC25000 lung + colon H&E",
    "dermoscopy": "ISIC (Kaggle benign/malignant)",
    "ultrasound": "BUSI breast ultrasound",
}


def cell(m: dict, key: str) -> str:
    ci = m.get(f"{key}_ci")
    return f"{m[key]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{m[key]:.3f}"


print("| model | data | test images (benign / malignant) | AUC | accuracy | sensitivity | specificity |")
print("|---|---|---|---|---|---|---|")
for folder in sorted((ROOT / "models").iterdir()):
    config = json.loads((folder / "config.json").read_text())
    m = config["training"]["metrics"]["test"]
    task = config["training"]["task"]
    print(
        f"| [`{folder.name}`](models/{folder.name}) | {DATA.get(task, task)} | {m['n']} ({m['n_benign']} / {m['n_malignant']}) | "
        + " | ".join(cell(m, k) for k in ("auc", "accuracy", "sensitivity", "specificity"))
        + " |"
    )
