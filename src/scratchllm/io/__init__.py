"""Files in and out: safetensors checkpoints (``save``/``load``) and atomic writes."""
from ..atomic import atomic_path, atomic_write
from .checkpoint import load, load_metadata, save

__all__ = ["atomic_path", "atomic_write", "load", "load_metadata", "save"]
