"""The one array-module handle.

Every array call in the package goes through ``xp`` so that a GPU backend
(CuPy has NumPy's API) can later be plugged in by changing this single line.
"""
import numpy as xp  # noqa: F401  (re-exported)

__all__ = ["xp"]
