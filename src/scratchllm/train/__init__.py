"""Training: ``TrainConfig``, presets, the loop with checkpoints and exact resume, ``scratchllm train``."""
from .config import TrainConfig
from .presets import DEFAULT_PRESET, PRESETS, preset_config
from .trainer import TrainResult, Trainer, train

__all__ = ["TrainConfig", "DEFAULT_PRESET", "PRESETS", "preset_config", "TrainResult", "Trainer", "train"]
