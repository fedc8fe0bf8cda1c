"""ONNX Runtime against PyTorch eager on the CPU: images per second at batch 1 and batch 64, for each shipped
model exported with ``cancer_models.inference.export`` (the same graph: preprocessing, network, temperature).

    python benchmarks/onnx_runtime.py [--seconds 5]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import command, machine

from cancer_models import load_pretrained
from cancer_models.inference.export import Deployable, export_onnx

MODELS = ("histopathology-cancer-cnn", "dermoscopy-cancer-cnn", "ultrasound-cancer-cnn")


def rate(run, batch: int, seconds: float) -> float:
    run()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        done += batch
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    report = {"benchmark": "onnx_runtime", "command": command(), "machine": machine(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for name in MODELS:
            model = load_pretrained(ROOT / "models" / name, device="cpu")
            path = export_onnx(model, Path(tmp) / f"{name}.onnx")
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            deployable = Deployable(model)
            size = model.config.input_size
            row = {}
            for batch in (1, 64):
                x = torch.rand(batch, 3, size, size) * 255
                feed = {"image": x.numpy()}
                row[f"batch{batch}"] = {
                    "pytorch_images_per_s": round(rate(lambda: deployable(x), batch, args.seconds), 1),  # noqa: B023
                    "onnxruntime_images_per_s": round(rate(lambda: session.run(None, feed), batch, args.seconds), 1),  # noqa: B023
                }
                row[f"batch{batch}"]["speedup"] = round(
                    row[f"batch{batch}"]["onnxruntime_images_per_s"] / row[f"batch{batch}"]["pytorch_images_per_s"], 2
                )
            report["models"][name] = row
            print(name, json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
