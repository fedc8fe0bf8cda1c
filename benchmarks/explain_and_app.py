"""Grad-CAM latency per method, and the app's end-to-end time per request and cold start.

    python benchmarks/explain_and_app.py [--model models/histopathology-cancer-cnn] [--repeats 20]

Per method: p50/p95 of Predictor.explain on a real tile (decode, predict, CAM, overlay). App: a real
`python app.py` server: seconds from process start to the first answered request (cold start, which
includes loading the model), then p50/p95 of /predict through gradio_client. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import command, free_port, machine, summary_ms, time_calls, wait_until_served

from cancer_models import CAM_METHODS, Predictor, load_pretrained

IMAGE = ROOT / "examples" / "histopathology_malignant_colonca100.jpg"


def cam_latency(model_dir: Path, repeats: int, device: torch.device) -> dict:
    predictor = Predictor(load_pretrained(model_dir, device=device))
    out = {}
    for method in CAM_METHODS:
        n = max(3, repeats // 5) if method == "scorecam" else repeats  # ScoreCAM runs a forward pass per channel
        out[method] = summary_ms(time_calls(lambda m=method: predictor.explain(IMAGE, method=m), n, device))
    return out


def app_timings(model_dir: Path, repeats: int) -> dict:
    from gradio_client import Client, handle_file

    port = free_port()
    catalog = Path(tempfile.mkdtemp()) / "catalog.json"
    catalog.write_text(
        json.dumps([{"name": "bench", "modality": "histopathology", "local_dir": str(model_dir.resolve())}])
    )
    env = {
        **os.environ,
        "CANCER_MODELS_CATALOG": str(catalog),
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_served(url, proc)
        page_ready = time.perf_counter() - start
        client = Client(url, verbose=False)

        def request():
            client.predict(handle_file(str(IMAGE)), "bench", "gradcam", 0.45, False, api_name="/predict")

        request()  # the first request loads the model
        cold = time.perf_counter() - start
        times = time_calls(request, repeats, torch.device("cpu"), warmup=1)
    finally:
        proc.terminate()
        proc.wait()
    return {
        "page_ready_s": round(page_ready, 2),
        "cold_start_to_first_answer_s": round(cold, 2),
        "request": summary_ms(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "histopathology-cancer-cnn")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="(the app picks its own)"
    )
    args = parser.parse_args()
    report = {
        "benchmark": "explain_and_app",
        "command": command(),
        "machine": machine(),
        "model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
        "device": args.device,
        "cam_latency": cam_latency(args.model, args.repeats, torch.device(args.device)),
        "app": app_timings(args.model, args.repeats),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
