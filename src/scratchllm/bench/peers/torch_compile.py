"""Can the ``torch.compile`` peer run here? (inductor on CPU needs a C++ compiler.)

Inductor compiles the C++ kernels it generates with the compiler named by the
``CXX`` environment variable, or else ``g++`` (``clang++`` on macOS): that is
``torch._inductor.config.cpp.cxx``, read when inductor's config is imported. It
does NOT fall back to ``c++`` or ``clang++`` when ``CXX`` is set or ``g++`` is
missing, so neither does ``find_cxx`` -- it answers the question inductor will ask.

    >>> find_cxx()                            # doctest: +SKIP
    ('g++', '/usr/bin/g++')
    >>> compile_skip_reason()                 # None: the peer can run   # doctest: +SKIP

torch is imported inside the functions only.
"""
import importlib.util
import os
import shutil
import sys


def find_cxx():
    """``(name, path)`` of the C++ compiler inductor will use; ``path`` is None when absent."""
    name = os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")
    return name, shutil.which(name)


def compile_skip_reason():
    """Why the ``torch.compile`` peer cannot run here (one line), or None when it can."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    name, path = find_cxx()
    if path is None:
        if os.environ.get("CXX"):
            return f"no C++ compiler: CXX={name} is not an executable file or on PATH"
        return f"no C++ compiler ({name}) on PATH"
    return None


def failure_note(exc: BaseException) -> str:
    """A one-line note for an exception raised while compiling or running the compiled step."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"torch.compile failed: {type(exc).__name__}: {first}".rstrip(": ")
