"""``no_grad`` / ``enable_grad``: whether new ops record the graph.

The flag is per thread (like PyTorch's), so one thread's ``no_grad`` block
never switches off recording in another.
"""
import functools
import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


def set_grad_enabled(mode: bool) -> None:
    _state.enabled = bool(mode)


class no_grad:
    """Context manager (and decorator) that stops graph recording.

    >>> with no_grad():
    ...     y = w * 2      # y.requires_grad is False, nothing is recorded
    """

    _mode = False

    def __new__(cls, fn=None):
        if fn is not None:  # used bare as a decorator: @no_grad
            return cls()(fn)
        return super().__new__(cls)

    def __init__(self, fn=None):
        pass

    def __enter__(self):
        self._prev = is_grad_enabled()
        set_grad_enabled(self._mode)
        return self

    def __exit__(self, *exc):
        set_grad_enabled(self._prev)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)

        return wrapper


class enable_grad(no_grad):
    """Context manager that switches recording back on inside ``no_grad``."""

    _mode = True
