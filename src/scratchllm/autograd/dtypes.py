"""Dtype aliases: ``sl.float32`` is NumPy's ``float32``, and so on."""
from ..backend import xp

float16 = xp.float16
float32 = xp.float32
float64 = xp.float64
int32 = xp.int32
int64 = xp.int64
uint8 = xp.uint8
bool_ = xp.bool_

__all__ = ["float16", "float32", "float64", "int32", "int64", "uint8", "bool_"]
