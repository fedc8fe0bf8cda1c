"""Training with Accelerate: options (``config``), the epoch loop (``loop``), checkpoints and resume
(``checkpoint``), loss and schedules (``optim``), and the finishing steps (``finish``: calibration,
threshold, one test evaluation, the Hub-ready folder), put together by ``trainer.train``."""

from .config import TrainConfig
from .loop import training_batch
from .optim import build_optimizer
from .trainer import train

__all__ = ["TrainConfig", "build_optimizer", "train", "training_batch"]
