"""Inference speed: latency at batch 1 (p50/p95) and throughput at batch 64, eager fp32 against the faster
options (channels_last, bf16 autocast where the hardware has it, torch.compile). Also checks that each
option gives the same predictions on real images (with a shipped, trained model), so a speed-up never
silently costs accuracy.

    python benchmarks/inference.py [--models histopathology-cancer-cnn resnet34] [--sizes 128 224] [--compile]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import DATA, command, machine, summary_ms, time_calls

from cancer_models import create_model, load_pretrained
from cancer_models.data.decoding import decode_split
from cancer_models.data.image_sets import load_splits
from cancer_models.data.spec import DataSpec
from cancer_models.models.preprocessing import model_input


def real_batch(size: int, n: int = 64) -> torch.Tensor:
    """n real histopathology test tiles (or noise where the data set is absent)."""
    if (DATA / "histopathology").is_dir():
        test = load_splits(DataSpec([str(DATA / "histopathology")]))["test"].shuffle(seed=0).select(range(n))
        return decode_split(test, size).images
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)


def variants(device: torch.device, allow_compile: bool) -> dict:
    bf16 = device.type == "cuda" or torch.backends.mkldnn.is_available()
    out = {"eager_fp32": {"channels_last": False, "amp": False, "compile": False}}
    out["channels_last_fp32"] = {"channels_last": True, "amp": False, "compile": False}
    if bf16:
        out["channels_last_bf16"] = {"channels_last": True, "amp": True, "compile": False}
    if allow_compile:
        out["compile_channels_last_fp32"] = {"channels_last": True, "amp": False, "compile": True}
        if bf16:
            out["compile_channels_last_bf16"] = {"channels_last": True, "amp": True, "compile": True}
    return out


def run(name: str, size: int, device: torch.device, allow_compile: bool, repeats: int) -> dict:
    torch.manual_seed(0)
    torch._dynamo.reset()  # compiled graphs of the previous model/size would count towards the recompile limit
    trained = ROOT / "models" / name
    base = load_pretrained(trained) if trained.is_dir() else create_model(name, input_size=size)
    base = base.eval().to(device)
    images = real_batch(size)
    x64 = model_input(images, base.config).to(device)
    results = {}
    reference = None
    for label, v in variants(device, allow_compile).items():
        model = base.to(memory_format=torch.channels_last if v["channels_last"] else torch.contiguous_format)
        forward = torch.compile(model, dynamic=False) if v["compile"] else model  # one graph per batch size
        batch = x64.contiguous(memory_format=torch.channels_last) if v["channels_last"] else x64.contiguous()

        @torch.inference_mode()
        def infer(x, forward=forward, amp=v["amp"]):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                return forward(x).float()

        probs = infer(batch).softmax(1)[:, 1]
        if reference is None:
            reference = probs
        one = batch[:1]
        latency = summary_ms(time_calls(lambda x=one: infer(x), repeats, device, warmup=3))
        big = time_calls(lambda x=batch: infer(x), max(3, repeats // 10), device, warmup=1)
        results[label] = {
            "batch1_latency": latency,
            "batch64_images_per_s": round(64 / min(big), 1),
            "max_abs_prob_diff_vs_eager": round((probs - reference).abs().max().item(), 5),
            "same_labels_vs_eager": int(((probs >= 0.5) == (reference >= 0.5)).sum().item()),
        }
    fastest = max(results, key=lambda k: results[k]["batch64_images_per_s"])
    return {
        "variants": results,
        "fastest": fastest,
        "speedup_batch64": round(
            results[fastest]["batch64_images_per_s"] / results["eager_fp32"]["batch64_images_per_s"], 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models",
        nargs="+",
        default=["histopathology-cancer-cnn", "resnet34"],
        help="shipped model folders under models/ (trained weights) or registry names (random weights)",
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 224])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to warm up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    report = {
        "benchmark": "inference",
        "command": command(),
        "machine": machine(),
        "device": str(device),
        "results": {},
    }
    for name in args.models:
        for size in args.sizes:
            report["results"][f"{name}@{size}"] = run(name, size, device, args.compile, args.repeats)
            print(f"{name}@{size}: done", file=sys.stderr)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
