"""``train``: the function behind ``accelerate launch train.py``.

Accelerate owns devices, mixed precision and processes. Images are decoded once to uint8 tensors at the
input size and augmented per batch on the device, which keeps small CPUs busy with the model, not JPEG.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.data_loader import DataLoaderShard
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, set_seed
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from ..data.augment import build_augmentation
from ..data.decoding import DecodedSplit, decode_split
from ..data.image_sets import check_no_shared_groups, fold_splits, load_splits
from ..data.streaming import StreamedImages, StreamedSplit, load_streamed
from ..errors import ConfigError
from ..models import CancerModel, build_from_config, default_config
from .checkpoint import TrainerState, load_checkpoint, save_best_weights, save_checkpoint, write_history
from .checks import check_config
from .config import CHECKPOINT_DIR, STATE_FILE, TrainConfig
from .cross_validation import build_ensemble, fold_dir
from .finish import finish, provenance
from .loop import Run, train_one_epoch, validate
from .optim import build_loss, build_optimizer, build_schedulers


def train(cfg: TrainConfig) -> Path:
    """Train, calibrate, evaluate on the test split once, and write a Hub-ready folder.

    Args:
        cfg: the run's settings (``cancer-models train``'s options). With ``cfg.folds``, one model per fold
            (each a folder ``foldK``) and then their ensemble; with ``cfg.fold`` too, that fold's model only.

    Returns:
        The model folder (``cfg.output_dir``).

    Raises:
        ConfigError: settings that do not go together, checked before any image is decoded.
        DataError: data that cannot be read as the settings say.
    """
    check_config(cfg)
    if not cfg.folds:
        accelerator = fit(cfg).accelerator
    else:
        accelerator = None
        for fold in [cfg.fold - 1] if cfg.fold else range(cfg.folds):
            folder = fold_dir(cfg, fold)
            if cfg.resume and (folder / "config.json").is_file():
                continue  # this fold finished before the interruption
            resume = cfg.resume and (folder / CHECKPOINT_DIR / STATE_FILE).is_file()
            accelerator = fit(dataclasses.replace(cfg, output_dir=str(folder), resume=resume), fold).accelerator
        accelerator = accelerator or Accelerator()
        if accelerator.is_main_process and not cfg.fold:
            build_ensemble(cfg, log=accelerator.print)
        accelerator.wait_for_everyone()
    accelerator.end_training()  # also ends the process group, so it comes after the last collective
    return Path(cfg.output_dir)


def fit(cfg: TrainConfig, fold: int | None = None) -> Run:
    """One model: trained (on fold ``fold`` of ``cfg.folds`` if given), calibrated, tested and written."""
    run = prepare_run(cfg, fold)
    state = TrainerState()
    if cfg.resume:
        state = load_checkpoint(run.accelerator, cfg)
        run.log(f"resumed after epoch {state.epoch} (best validation AUC {state.best_auc:.4f})")
    run.accelerator.init_trackers("logs", config={k: str(v) for k, v in dataclasses.asdict(cfg).items()})
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if state.stale_epochs >= cfg.patience or (cfg.max_steps and state.step >= cfg.max_steps):
            break
        run_epoch(run, state, epoch)
    finish(run, state)
    for tracker in run.accelerator.trackers:
        tracker.finish()
    return run


def run_epoch(run: Run, state: TrainerState, epoch: int) -> None:
    """Train one epoch, validate, keep the best weights, and checkpoint."""
    accelerator, out = run.accelerator, Path(run.cfg.output_dir)
    train_loss, steps = train_one_epoch(run, epoch, (run.cfg.max_steps - state.step) or None)
    state.step += steps
    row = validate(run, epoch, train_loss)
    accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "epoch"}, step=epoch)
    improved = state.record(row)
    if run.epoch_scheduler is not None:
        run.epoch_scheduler.step(row["val_auc"])
    run.log(
        f"epoch {epoch}: train loss {row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
        f"val AUC {row['val_auc']:.4f}, val acc {row['val_accuracy']:.4f}{' *' if improved else ''}"
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if improved:
            save_best_weights(accelerator, run.model, out)
        write_history(out, state.history)
    save_checkpoint(accelerator, run.cfg, state)


def prepare_run(cfg: TrainConfig, fold: int | None = None) -> Run:
    """Model and data built, decoded and handed to Accelerate, with optimizer, schedules, loss and augmentation;
    with ``fold``, the data is that cross-validation fold (``data.fold_splits``)."""
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        log_with="tensorboard",
        project_dir=cfg.output_dir,
        # non_blocking: with pinned memory, the next batch's copy to the GPU overlaps this step's work
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, non_blocking=True),
        # A frozen backbone gets no gradients, which DDP must be told to expect.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.freeze_epochs > 0)],
    )
    set_seed(cfg.seed)
    _warn_about_idle_cores(accelerator)
    # One process downloads ImageNet weights, builds the datasets cache and decodes the images into it; the
    # others then read all three.
    with accelerator.main_process_first():
        model = _build_model(cfg)  # before the data: a bad model option fails in seconds
        decoded, streamed = _load_data(cfg, fold)
    _report_data(accelerator, decoded, streamed)
    check_no_shared_groups(
        {name: d.groups for name, d in decoded.items()} | ({"train": streamed.groups} if streamed else {})
    )

    model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay)
    # With a stream, decoded["train"] is only a sample, for the rejection check: the stream has its own loader.
    loaders = {
        name: _loader(d, cfg, accelerator, shuffle=name == "train")
        for name, d in decoded.items()
        if not (streamed and name == "train")
    }
    model, optimizer, *prepared = accelerator.prepare(model, optimizer, *loaders.values())
    loaders = dict(zip(loaders, prepared))
    if streamed:
        loaders["train"] = _stream_loader(streamed, cfg, accelerator)
    steps_per_epoch = len(streamed) // (cfg.batch_size * accelerator.num_processes) if streamed else None
    step_scheduler, epoch_scheduler = build_schedulers(cfg, optimizer, steps_per_epoch or len(loaders["train"]))
    accelerator.register_for_checkpointing(*(s for s in (step_scheduler, epoch_scheduler) if s is not None))
    if cfg.compile:
        model = torch.compile(model)
    torch.backends.cudnn.benchmark = True  # one input size throughout, so cuDNN's timing run pays off
    return Run(
        cfg=cfg,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        step_scheduler=step_scheduler,
        epoch_scheduler=epoch_scheduler,
        loaders=loaders,
        decoded=decoded,
        augment=build_augmentation(cfg.augment).to(accelerator.device),
        criterion=build_loss(cfg, _sampled_class_counts(cfg, streamed or decoded["train"])).to(accelerator.device),
        started=time.time(),
        provenance=provenance(accelerator.device, accelerator.num_processes),
        streamed=streamed,
        steps_per_epoch=max(1, steps_per_epoch) if streamed else None,
    )


def _stream_loader(streamed: StreamedSplit, cfg: TrainConfig, accelerator: Accelerator) -> DataLoader:
    """Split between processes by the stream itself (split_dataset_by_node), not by Accelerate; batches on the
    device like those of the prepared loaders. Every process takes the same number of steps (``steps_per_epoch``)."""
    images = StreamedImages(
        streamed, cfg.input_size, cfg.seed, accelerator.process_index, accelerator.num_processes,
        cfg.skip_bad_images, cfg.shuffle_buffer,
    )  # fmt: skip
    return DataLoaderShard(images, device=accelerator.device, batch_size=cfg.batch_size)


# Streaming: training images decoded up front as a sample of the stream, to fit the rejection check on.
STREAM_SAMPLE = 2000


def _load_data(cfg: TrainConfig, fold: int | None) -> tuple[dict[str, DecodedSplit], StreamedSplit | None]:
    """The decoded splits (with ``--streaming``: validation, test and a sample of the training stream) and the
    training stream."""
    in_memory = {"auto": None, "memory": True, "disk": False}[cfg.decoded_images]
    streamed = None
    if cfg.streaming:
        streamed, splits = load_streamed(cfg.data_spec())
        splits["train"] = streamed.head(STREAM_SAMPLE)
    else:
        splits = load_splits(cfg.data_spec())
        if fold is not None:
            splits = fold_splits(splits, fold, cfg.folds, cfg.seed)
    workers = cfg.decode_workers or None
    decoded = {
        name: decode_split(
            ds, cfg.input_size, cfg.skip_bad_images, f"decoding {name}", in_memory, workers, cfg.preprocessing
        )
        for name, ds in splits.items()
    }
    return decoded, streamed


def _report_data(accelerator: Accelerator, decoded: dict[str, DecodedSplit], streamed: StreamedSplit | None) -> None:
    for name, d in decoded.items():
        if name == "train" and streamed:
            counts = streamed.class_counts()
            accelerator.print(
                f"train: {len(streamed)} images (benign {counts[0]}, malignant {counts[1]}; streamed, the first "
                f"{len(d)} decoded for the rejection check)"
            )
            continue
        where = "in memory" if d.in_memory else "read from the memory-mapped cache"
        reused = ", decoded by an earlier run" if d.cache_hit else ""
        accelerator.print(
            f"{name}: {len(d)} images (benign {d.class_counts()[0]}, malignant {d.class_counts()[1]}; {where}{reused})"
        )
        for problem in d.skipped:
            accelerator.print(f"warning: {name}: skipped {problem}")
    if not accelerator.is_main_process:  # the main process decoded first: did this one read its cache?
        shared = [name for name, d in decoded.items() if d.cache_hit]
        print(f"process {accelerator.process_index}: decoded images read from the shared cache for {shared}")


def _build_model(cfg: TrainConfig) -> CancerModel:
    config = default_config(
        cfg.model, input_size=cfg.input_size, **({"pretrained_backbone": True} if cfg.pretrained else {})
    )
    config.cam_layers = cfg.cam_layers or []
    config.colour_constancy = cfg.colour_constancy
    config.preprocessing = cfg.preprocessing
    model = build_from_config(config)
    if cfg.freeze_epochs and not model.has_backbone:
        raise ConfigError(f"--freeze-epochs applies to transfer models (a backbone to freeze), not to {cfg.model}")
    return model


class SplitDataset(Dataset):
    """A decoded split's (images, targets[, masks]) read a whole batch at a time: one read of the memory-mapped
    cache per batch rather than one per image."""

    def __init__(self, split: DecodedSplit, with_masks: bool) -> None:
        self.columns = (split.images, split.targets, *([split.masks] if with_masks else []))

    def __len__(self) -> int:
        return len(self.columns[1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(column[index] for column in self.columns)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        return tuple(column[indices] for column in self.columns)


def _whole_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch  # __getitems__ already returns the batch


def _loader(split: DecodedSplit, cfg: TrainConfig, accelerator: Accelerator, shuffle: bool) -> DataLoader:
    with_masks = shuffle and cfg.mask_loss and split.masks is not None  # masks matter only to training
    sampler = None
    if shuffle and cfg.balance_collections:
        weights = collection_weights(split.collections, split.targets)
        sampler = WeightedRandomSampler(
            weights, num_samples=len(split), generator=torch.Generator().manual_seed(cfg.seed)
        )
    return DataLoader(
        SplitDataset(split, bool(with_masks)),
        batch_size=cfg.batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        collate_fn=_whole_batch,
        pin_memory=accelerator.device.type == "cuda",
    )


def _sampled_class_counts(cfg: TrainConfig, train: DecodedSplit | StreamedSplit) -> list[float]:
    """Images of each class the loss sees per epoch: the split's counts, or with --balance-collections what the
    weighted sampler draws on average (class weights must match what is drawn, not what is stored)."""
    if not cfg.balance_collections:
        return train.class_counts()
    weights = collection_weights(train.collections, train.targets)
    drawn = torch.zeros(2, dtype=torch.float64).index_add_(0, train.targets, weights)
    return (drawn / drawn.sum() * len(train)).tolist()


# A class with fewer images than this in a collection is drawn as it is, not multiplied many times over.
MIN_BALANCED_CLASS = 20


def collection_weights(collections: list[str], targets: torch.Tensor) -> torch.Tensor:
    """Each image's sampling weight under ``--balance-collections``: every collection keeps its share of the draws,
    and within it both classes are drawn equally often where it holds at least ``MIN_BALANCED_CLASS`` images of
    each. Collections differ in how common cancer is (a referral clinic's images against a screening practice's):
    left as they are, a model learns to tell a collection's look (its camera, light, skin types) and reads its
    prevalence off it, which fails on every clinic it never saw.

    Args:
        collections: each training image's collection.
        targets: each image's class (0 benign, 1 malignant).

    Returns:
        The weights, float64 (N,).
    """
    cells = Counter(zip(collections, targets.tolist(), strict=True))
    sizes = Counter(collections)
    weights = []
    for c, y in zip(collections, targets.tolist(), strict=True):
        balanced = min(cells[(c, 0)], cells[(c, 1)]) >= MIN_BALANCED_CLASS
        weights.append(sizes[c] / (2 * cells[(c, y)]) if balanced else 1.0)
    return torch.tensor(weights, dtype=torch.float64)


def _warn_about_idle_cores(accelerator: Accelerator) -> None:
    free = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)  # not on macOS
    cores = len(free) // accelerator.num_processes
    if accelerator.device.type == "cpu" and torch.get_num_threads() < cores:
        accelerator.print(
            f"warning: PyTorch uses {torch.get_num_threads()} thread(s) where {cores} cores are free per process; "
            "`accelerate launch` sets OMP_NUM_THREADS=1 unless given --num_cpu_threads_per_process N"
        )
