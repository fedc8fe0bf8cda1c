"""Training throughput (images/s) of our pipeline against a plain reference loop, same model, data and machine.

Ours: images decoded once to uint8 tensors at the input size (timed separately, once per run), copied to
the device from pinned memory without blocking, augmented per batch on the device, channels_last, through
train.py's own `training_batch` and `build_optimizer` (fused AdamW), with its gradient clipping. Reference:
torchvision ImageFolder + DataLoader (one worker per core, at most 8) with per-image PIL transforms of the
same kind (flips, 90-degree rotation, affine, colour jitter), the textbook step. Both: the same pool of
training tiles, cycled; AdamW, cross-entropy, batch 64 and fp32 unless --batch-size / --mixed-precision
bf16 (which trains about 10x slower than fp32 on a CPU without AMX). --compile compiles our model as
train.py --compile does (the reference stays eager). Also timed: our model update alone on one batch
already on the device, the ceiling that no input pipeline can pass.

    python benchmarks/train_throughput.py [--models cancer_cnn resnet34] [--sizes 96 160 224] [--steps 12] [--compile]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset
from torchvision.transforms import v2 as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import DATA, command, machine, sync

from cancer_models import create_model
from cancer_models.data.augment import build_augmentation
from cancer_models.data.decoding import decode_split
from cancer_models.data.image_sets import load_splits
from cancer_models.data.spec import DataSpec
from cancer_models.training.loop import training_batch
from cancer_models.training.optim import build_optimizer

WARMUP_STEPS = 3  # the first steps pay for allocator growth and kernel selection
WORKERS = min(8, os.cpu_count() or 1)


def timed_steps(model, batches, step, n_steps: int, device) -> float:
    """images/s over n_steps after WARMUP_STEPS untimed ones."""
    it = iter(batches)
    for _ in range(WARMUP_STEPS):
        step(model, *next(it))
    sync(device)
    start, seen = time.perf_counter(), 0
    for _ in range(n_steps):
        images, targets = next(it)
        step(model, images, targets)
        seen += len(targets)
    sync(device)
    return seen / (time.perf_counter() - start)


def _autocast(device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def ours(name: str, size: int, batch: int, n_images: int, n_steps: int, device, bf16: bool, compiled: bool) -> dict:
    start = time.perf_counter()
    split = load_splits(DataSpec([str(DATA / "histopathology")]))["train"].shuffle(seed=0).select(range(n_images))
    decoded = decode_split(split, size)
    decode_s = time.perf_counter() - start
    model = create_model(name, input_size=size).to(device, memory_format=torch.channels_last).train()
    optimizer = build_optimizer(model, 1e-3, 1e-4)
    net = torch.compile(model) if compiled else model
    augment = build_augmentation("histopathology").to(device)
    loader = DataLoader(
        TensorDataset(decoded.images, decoded.targets),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )

    def update(model, x, targets):
        with _autocast(device, bf16):
            loss = nn.functional.cross_entropy(net(x), targets)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def step(model, images, targets):
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with torch.no_grad():
            x, _ = training_batch(images, augment, model.config)
        update(model, x, targets)

    images_per_s = timed_steps(model, _cycle(loader), step, n_steps, device)
    # The same update on one batch already on the device, augmented: the ceiling no input pipeline can pass.
    images, targets = next(iter(loader))
    with torch.no_grad():
        x, _ = training_batch(images.to(device), augment, model.config)
    ceiling = timed_steps(model, itertools.repeat((x, targets.to(device))), update, n_steps, device)
    return {
        "images_per_s": round(images_per_s, 1),
        "one_time_decode_s": round(decode_s, 1),
        "model_step_only_images_per_s": round(ceiling, 1),
    }


def reference(name: str, size: int, batch: int, n_images: int, n_steps: int, device, bf16: bool) -> dict:
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
    loader = DataLoader(
        subset,
        batch_size=batch,
        shuffle=True,
        num_workers=WORKERS,
        drop_last=True,
        persistent_workers=True,
        pin_memory=device.type == "cuda",
    )
    model = create_model(name, input_size=size).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)

    def step(model, images, targets):
        images, targets = images.to(device), targets.to(device)
        with _autocast(device, bf16):
            loss = nn.functional.cross_entropy(model(images), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return {"images_per_s": round(timed_steps(model, _cycle(loader), step, n_steps, device), 1)}


def _cycle(loader):
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cancer_cnn", "resnet34"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[96, 160, 224])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per measurement")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=1024, help="training tiles in the pool both loops cycle over")
    parser.add_argument("--mixed-precision", choices=["no", "bf16"], default="no")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model (warm-up pays for it)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if not (DATA / "histopathology").is_dir():
        sys.exit(f"needs the data set at {DATA} (set CANCER_DATA)")
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True  # for both loops: one input size each
    bf16 = args.mixed_precision == "bf16"
    report = {
        "benchmark": "train_throughput",
        "command": command(),
        "machine": machine(),
        "device": str(device),
        "batch": args.batch_size,
        "precision": "bf16 autocast" if bf16 else "fp32",
        "compiled": args.compile,
        "reference_workers": WORKERS,
        "timed_steps": args.steps,
        "results": {},
    }
    for name in args.models:
        for size in args.sizes:
            torch.manual_seed(0)
            ref = reference(name, size, args.batch_size, args.images, args.steps, device, bf16)
            torch.manual_seed(0)
            torch._dynamo.reset()  # the previous size's graphs would count towards the recompile limit
            our = ours(name, size, args.batch_size, args.images, args.steps, device, bf16, args.compile)
            report["results"][f"{name}@{size}"] = {
                "ours": our,
                "reference": ref,
                "speedup": round(our["images_per_s"] / ref["images_per_s"], 2),
            }
            print(f"{name}@{size}: {report['results'][f'{name}@{size}']}", file=sys.stderr)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
