"""Training throughput (images/s) of our pipeline against a plain reference loop, same model, data and machine.

Ours: images decoded once to uint8 tensors at the input size (timed separately, once per run), augmented
per batch on the device with kornia, channels_last. Reference: torchvision ImageFolder + DataLoader
(2 workers) with per-image PIL transforms of the same kind (flips, 90-degree rotation, affine, colour
jitter), the textbook step. Both: AdamW, batch 64, cross-entropy, fp32 (bf16 autocast trains about
10x slower than fp32 on this CPU).

    python benchmarks/train_throughput.py [--models cancer_cnn resnet34] [--sizes 96 160 224] [--steps 6]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset
from torchvision.transforms import v2 as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import DATA, machine  # noqa: E402

from cancer_models import create_model  # noqa: E402
from cancer_models.augment import build_augmentation  # noqa: E402
from cancer_models.data import DataSpec, decode_split, load_splits  # noqa: E402
from cancer_models.images import normalize  # noqa: E402

BATCH = 64


def timed_steps(model, batches, step, n_steps: int) -> float:
    """images/s over n_steps after one untimed warm-up step."""
    it = iter(batches)
    step(model, *next(it))
    start, seen = time.perf_counter(), 0
    for _ in range(n_steps):
        images, targets = next(it)
        step(model, images, targets)
        seen += len(targets)
    return seen / (time.perf_counter() - start)


def ours(name: str, size: int, n_images: int, n_steps: int, device) -> dict:
    start = time.perf_counter()
    split = load_splits(DataSpec([str(DATA / "histopathology")]))["train"].shuffle(seed=0).select(range(n_images))
    decoded = decode_split(split, size)
    decode_s = time.perf_counter() - start
    model = create_model(name, input_size=size).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    augment = build_augmentation("histopathology").to(device)
    loader = DataLoader(TensorDataset(decoded.images, decoded.targets), batch_size=BATCH, shuffle=True, drop_last=True)

    def step(model, images, targets):
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with torch.no_grad():
            x = augment(images.float().div(255)).mul(255)
            x = normalize(x, model.config.mean, model.config.std).contiguous(memory_format=torch.channels_last)
        loss = nn.functional.cross_entropy(model(x), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return {
        "images_per_s": round(timed_steps(model, _cycle(loader), step, n_steps), 1),
        "one_time_decode_s": round(decode_s, 1),
    }


def reference(name: str, size: int, n_images: int, n_steps: int, device) -> dict:
    transform = T.Compose(
        [
            T.Resize((size, size)),
            T.RandomHorizontalFlip(),
            T.RandomVerticalFlip(),
            T.RandomChoice([T.RandomRotation((a, a)) for a in (0, 90, 180, 270)]),
            T.RandomApply([T.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1), shear=5)], p=0.5),
            T.ColorJitter(0.1, 0.1, 0.1, 0.02),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    folder = torchvision.datasets.ImageFolder(str(DATA / "histopathology" / "train"), transform=transform)
    subset = Subset(folder, torch.randperm(len(folder), generator=torch.Generator().manual_seed(0))[:n_images].tolist())
    loader = DataLoader(subset, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True, persistent_workers=True)
    model = create_model(name, input_size=size).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)

    def step(model, images, targets):
        images, targets = images.to(device), targets.to(device)
        loss = nn.functional.cross_entropy(model(images), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return {"images_per_s": round(timed_steps(model, _cycle(loader), step, n_steps), 1)}


def _cycle(loader):
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cancer_cnn", "resnet34"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[96, 160, 224])
    parser.add_argument("--steps", type=int, default=6, help="timed steps of batch 64 per measurement")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if not (DATA / "histopathology").is_dir():
        sys.exit(f"needs the data set at {DATA} (set CANCER_DATA)")
    device = torch.device(args.device)
    n_images = BATCH * (args.steps + 2)
    report = {
        "benchmark": "train_throughput",
        "machine": machine(),
        "device": str(device),
        "batch": BATCH,
        "results": {},
    }
    for name in args.models:
        for size in args.sizes:
            torch.manual_seed(0)
            ref = reference(name, size, n_images, args.steps, device)
            torch.manual_seed(0)
            our = ours(name, size, n_images, args.steps, device)
            report["results"][f"{name}@{size}"] = {
                "ours": our,
                "reference": ref,
                "speedup": round(our["images_per_s"] / ref["images_per_s"], 2),
            }
            print(f"{name}@{size}: {report['results'][f'{name}@{size}']}", file=sys.stderr)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
