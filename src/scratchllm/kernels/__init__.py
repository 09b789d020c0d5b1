"""Optional compiled kernels: one-pass loops for the few ops NumPy does in too many passes.

scratchllm runs on NumPy alone. When numba is installed (the default install has it where numba
has wheels), LayerNorm / RMSNorm, the Adam / AdamW update, tanh-GELU, the attention softmax, RoPE,
ReLU² and the embedding's scatter-add run as the loops in ``numba_kernels.py`` instead of their
NumPy passes (a LayerNorm over 768 rows of 128: ~15 NumPy passes, ~0.5 ms forward and backward;
one loop each way, ~0.07 ms). Each op keeps its NumPy code, which is
used when numba is missing or when ``SCRATCHLLM_KERNELS=numpy``; the tests run both paths
against torch.

    >>> from scratchllm.kernels import kernels
    >>> k = kernels()          # the numba_kernels module, or None
"""
import functools
import os
import warnings

_ENV = "SCRATCHLLM_KERNELS"  # "numpy": never use the compiled kernels; "numba": require them


def kernels():
    """The ``numba_kernels`` module when it can be used, else None (NumPy code paths).

    Read on every call, so ``SCRATCHLLM_KERNELS`` can be changed while running (tests do).
    """
    choice = os.environ.get(_ENV, "auto")
    if choice == "numpy":
        return None
    module = _load()
    if module is None and choice == "numba":
        raise ImportError(f"{_ENV}=numba but numba cannot be imported; install it with "
                          f"pip install \"scratchllm[fast]\" or unset {_ENV}")
    return module


@functools.lru_cache(maxsize=None)
def _load():
    """Import the kernels once (numba's import takes ~0.3 s, so only on first use). No numba:
    None. A numba that is installed but cannot work here (e.g. no writable cache folder for the
    compiled code): None too, with a warning that says why."""
    try:
        from . import numba_kernels
    except ImportError:
        return None
    except (RuntimeError, OSError) as e:
        warnings.warn(f"scratchllm: numba is installed but its kernels cannot be used ({e}); "
                      f"running the NumPy code", RuntimeWarning, stacklevel=3)
        return None
    return numba_kernels


def name() -> str:
    """``"numba"`` or ``"numpy"``: which code the kernel-backed ops run now (reported by benchmarks)."""
    return "numba" if kernels() is not None else "numpy"
