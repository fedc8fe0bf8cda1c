"""The app's cold start: seconds from `python app.py` to the page, and to the first answered /predict request.

    python benchmarks/cold_start.py [--runs 3]

Each run starts a fresh `python app.py` on a free port with the shipped catalog (models load on first use)
and asks for one prediction with Grad-CAM as soon as the page answers. Also times, each in a fresh
interpreter, the imports every start pays: the floor under any cold start. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import command, free_port, machine, wait_until_served

IMAGE = ROOT / "examples" / "histopathology_malignant_colonca100.jpg"
MODEL = "Histopathology · custom CNN"
IMPORTS = ["torch", "gradio", "pytorch_grad_cam", "cancer_models", "gradio, cancer_models, pytorch_grad_cam"]


def import_seconds(modules: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {modules}"], check=True)
    return time.perf_counter() - start


def one_start(client_class, handle_file) -> dict:
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_served(url, proc)
        page = time.perf_counter() - start
        client_class(url, verbose=False).predict(
            handle_file(str(IMAGE)), MODEL, "gradcam", 0.45, False, api_name="/predict"
        )
        return {"page_s": round(page, 2), "first_answer_s": round(time.perf_counter() - start, 2)}
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from gradio_client import Client, handle_file  # before the clock starts: the client is not the app

    runs = [one_start(Client, handle_file) for _ in range(args.runs)]
    report = {
        "benchmark": "cold_start",
        "command": command(),
        "machine": machine(),
        "runs": runs,
        "median_first_answer_s": statistics.median(r["first_answer_s"] for r in runs),
        "import_s": {m: round(statistics.median(import_seconds(m) for _ in range(args.runs)), 2) for m in IMPORTS},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
