"""Every training option in one dataclass (train.py's command line is generated from it). Plain Python: the
command line's help is built from it without loading torch or the data libraries (``checks.py`` validates a
config against what the library has)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import COLOUR_CONSTANCY, PREPROCESSING
from ..data.spec import DataSpec, parse_label_map, parse_source_mpp
from ..errors import ConfigError
from ..settings import TileSpec

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"
# The registry's architectures and the augmentation presets by name, written out so that the help needs no torch;
# checks.py refuses a name the library lacks, and a test keeps these lists equal to the library's.
ARCHITECTURES = ("cancer_cnn", "efficientnet_b0", "mobilenet_v2", "resnet18", "resnet34", "resnet50", "vgg16")
AUGMENTATION_PRESETS = (
    "none",
    "default",
    "histopathology",
    "histopathology_strong_stain",
    "dermoscopy",
    "dermoscopy_moving",
    "ultrasound",
    "mammography",
)


def _opt(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    data: list[str] = _opt(
        None, "image set(s): imagefolder directories, Hub dataset ids or their downloaded parquet folders (combined)"
    )
    output_dir: str = _opt("runs/model", "folder for the trained model, its card, plots and checkpoints")
    model: str = _opt("cancer_cnn", "architecture", choices=list(ARCHITECTURES))
    input_size: int = _opt(128, "images are resized to input_size x input_size")
    colour_constancy: str = _opt(
        "none",
        "per-image colour normalisation, part of the model (applied in training, evaluation, the app and Grad-CAM)",
        choices=list(COLOUR_CONSTANCY),
    )
    preprocessing: str = _opt(
        "none",
        "what is done to each image before it is resized, part of the model: 'mammogram' finds the breast, crops "
        "it, puts the chest wall on the left and a dark background behind it",
        choices=list(PREPROCESSING),
    )
    pretrained: bool = _opt(False, "start transfer models from ImageNet weights (downloads them once)")
    freeze_epochs: int = _opt(
        0, "transfer models: epochs that train only the head (backbone without gradients, BatchNorm fixed)"
    )
    image_column: str = _opt("image", "dataset column holding the images")
    label_column: str = _opt("label", "dataset column holding the labels")
    group_column: str = _opt("group", "dataset column grouping near-copies (kept in one split); optional")
    label_map: str = _opt("", "map raw labels onto benign/malignant, e.g. 'lung_n=benign,lung_aca=malignant'")
    leave_out: list[str] | None = _opt(
        None,
        "collections to hold out of every split (a part of the name in the data's 'source' column, e.g. "
        "vidir_modern, ISIC, GlaS; or of a --data folder's name where there is no such column): the run is scored "
        "on them as on images from a clinic or lab it never saw",
    )
    tile_size: int | None = _opt(
        None,
        "the side of a training tile in pixels (at --tile-mpp): recorded for slides, and with --source-mpp the size "
        "larger images are cut to",
    )
    tile_mpp: float | None = _opt(None, "microns per pixel of a training tile, where known")
    source_mpp: list[str] | None = _opt(
        None,
        "microns per pixel of --data sources by folder name, e.g. histopathology_glas=0.62: with --tile-size and "
        "--tile-mpp, their images are cut into tiles of that physical size",
    )
    balance_collections: bool = _opt(
        False,
        "draw training images so that within every collection (--leave-out's names) both classes are seen equally "
        "often (where it holds 20 of each): how common cancer is in a clinic's images then says nothing a model "
        "could learn from that clinic's look",
    )
    validation_fraction: float = _opt(0.15, "share split off for validation where a source has no validation split")
    test_fraction: float = _opt(0.15, "share split off for testing where a source has no test split")
    masks: list[str] | None = _opt(
        None,
        "lesion mask folders, one per --data source ('none' for a source without), 0/255 PNGs at the images' "
        "relative paths; used with --mask-loss",
    )
    mask_loss: float = _opt(
        0.0, "weight of the mask-guided term: the share of Grad-CAM heat outside the lesion, on images with masks"
    )
    cam_layers: list[str] | None = _opt(
        None,
        "the model's CAM target layers (module names, e.g. stage3.1), which --mask-loss guides; default: the "
        "architecture's",
    )
    skip_bad_images: bool = _opt(
        False, "leave out images that cannot be decoded (listed in the log and the model's config) instead of stopping"
    )
    folds: int = _opt(
        0,
        "K-fold cross-validation: train + validation pooled and cut into K folds that never split a group; one "
        "model per fold, early-stopped on its held-out fold, served together as one ensemble whose temperature, "
        "threshold and prediction sets come from the out-of-fold predictions (0: one model on the given splits)",
    )
    fold: int = _opt(
        0,
        "with --folds: train only this fold (1..K), to spread the folds over GPUs or machines sharing output_dir; "
        "once every fold is done, the same command without --fold and with --resume builds the ensemble",
    )
    decoded_images: str = _opt(
        "auto",
        "where decoded images live: in RAM, or on disk in datasets' memory-mapped cache, read batch by batch (for "
        "sets larger than memory); auto: RAM for a split up to 2 GiB decoded",
        choices=["auto", "memory", "disk"],
    )
    streaming: bool = _opt(
        False,
        "stream the training split (Hub datasets too large for local disk): read through a shuffle buffer, split "
        "across processes and decoded as it arrives; validation and test splits are read in full",
    )
    shuffle_buffer: int = _opt(10_000, "--streaming: images in the shuffle buffer")
    decode_workers: int = _opt(0, "processes decoding images into the cache (0: one per CPU core)")
    cache_dir: str = _opt(
        None, "datasets' cache folder, where decoded images are kept too (default: HF_DATASETS_CACHE)"
    )
    augment: str = _opt("default", "augmentation preset", choices=list(AUGMENTATION_PRESETS))
    epochs: int = _opt(30, "maximum epochs")
    max_steps: int = _opt(0, "stop after this many optimizer steps (0: no limit), e.g. for smoke runs and benchmarks")
    batch_size: int = _opt(64, "batch size per process")
    lr: float = _opt(1e-3, "peak learning rate (AdamW)")
    weight_decay: float = _opt(1e-4, "AdamW weight decay")
    warmup_epochs: float = _opt(1.0, "linear warm-up before the schedule")
    scheduler: str = _opt(
        "cosine",
        "after warm-up: cosine decay, or plateau (halve when validation AUC stalls)",
        choices=["cosine", "plateau"],
    )
    patience: int = _opt(8, "early stopping: epochs without a better validation AUC (ties: lower validation loss)")
    clip_grad: float = _opt(1.0, "gradient norm clipping (0 disables)")
    loss: str = _opt("ce", "loss", choices=["ce", "focal"])
    focal_gamma: float = _opt(2.0, "focal loss gamma")
    class_weights: bool = _opt(True, "weight the loss by inverse class frequency of the training split")
    label_smoothing: float = _opt(0.0, "label smoothing for the cross-entropy loss")
    threshold_rule: str = _opt(
        "youden", "how the decision threshold is chosen on validation: youden, sensitivity=0.95, or a number"
    )
    mixed_precision: str = _opt(
        None, "default: what `accelerate launch` was configured with", choices=["no", "bf16", "fp16"]
    )
    compile: bool = _opt(False, "torch.compile the model (for GPUs: no faster on the CPU, see benchmarks/README.md)")
    seed: int = _opt(0, "random seed")
    task: str = _opt("", "what the model is for, shown in its card, e.g. 'histopathology (LC25000)'")
    license: str = _opt("other", "the trained weights' license for the model card (a Hub license id, e.g. cc-by-4.0)")
    resume: bool = _opt(False, "continue from output_dir/checkpoint after an interruption")

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.output_dir) / CHECKPOINT_DIR

    def data_spec(self) -> DataSpec:
        """Where the run's images are and how to read, split, hold out and tile them."""
        return DataSpec(
            sources=self.data,
            image_column=self.image_column,
            label_column=self.label_column,
            group_column=self.group_column,
            label_map=parse_label_map(self.label_map),
            mask_dirs=[None if m.lower() == "none" else m for m in self.masks or []],
            leave_out=list(self.leave_out or ()),
            tile=TileSpec(self.tile_size, self.tile_mpp) if self.tile_size else None,
            source_mpp=parse_source_mpp(self.source_mpp or []),
            validation_fraction=self.validation_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
            cache_dir=self.cache_dir,
        )


# Settings a resumed run must share with the interrupted one, or it would not continue the same run.
_RESUME_MUST_MATCH = (
    "data", "leave_out", "source_mpp", "tile_size", "tile_mpp", "model", "input_size", "colour_constancy", "preprocessing", "batch_size", "augment", "seed",
    "epochs", "lr", "freeze_epochs", "masks", "mask_loss", "cam_layers", "max_steps", "folds",
)  # fmt: skip


def check_resume_compatible(saved: dict[str, Any], cfg: TrainConfig) -> None:
    # A checkpoint written before an option existed was trained with that option's default.
    saved = {**{f.name: f.default for f in fields(TrainConfig)}, **saved}
    different = [k for k in _RESUME_MUST_MATCH if saved[k] != getattr(cfg, k)]
    if different:
        detail = ", ".join(f"{k}: {saved[k]!r} -> {getattr(cfg, k)!r}" for k in different)
        raise ConfigError(f"--resume with different settings ({detail}); use a new output_dir instead")
