"""Mixed precision on a GPU: float16 or bfloat16 products under ``autocast``, float32 master weights.

    scaler = sl.amp.GradScaler()
    with sl.amp.autocast():                  # Linear's products in float16 (tensor cores), the rest float32
        _, loss = model(x, y)
    scaler.scale(loss).backward()            # loss * S: small float16 gradients do not flush to 0
    scaler.step(optimizer)                   # grads / S; skipped (and S halved) when any is inf/nan
    scaler.update()                          # S doubled after ``growth_interval`` good steps

    with sl.amp.autocast("bfloat16"):        # bfloat16: float32's exponent range, so no loss scaling
        _, loss = model(x, y)
    loss.backward(); optimizer.step()

The parameters, their gradients and the optimizer stay float32 (the master weights); only the
inputs of the matrix products are rounded to float16 / bfloat16, and the products come back as
float32. This is Tricycle's recipe. CuPy has no bfloat16 dtype: a bfloat16 array is kept as its
bits in a uint16 array (kernels/cuda_kernels.py ``to_bf16``, round to nearest even) and multiplied
by cuBLAS ``gemmEx`` (bfloat16 inputs, float32 accumulation and output). On the CPU autocast
changes nothing (NumPy's half-precision products are slow, not fast).
"""
import contextlib
import math

_STATE = {"dtype": None}
_NAMES = {"float16": "float16", "half": "float16", "fp16": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}


@contextlib.contextmanager
def autocast(dtype="float16", enabled: bool = True):
    """Within the block, GPU ``linear`` products take float16 (or bfloat16) inputs (float32 results)."""
    name = _NAMES.get(str(getattr(dtype, "__name__", dtype)).lower())
    if enabled and name is None:
        raise ValueError(f"autocast: dtype must be 'float16' or 'bfloat16', got {dtype!r}")
    old = _STATE["dtype"]
    _STATE["dtype"] = name if enabled else None
    try:
        yield
    finally:
        _STATE["dtype"] = old


def autocast_dtype():
    """``"float16"`` or ``"bfloat16"`` inside ``autocast``, else None (read by the GPU ops)."""
    return _STATE["dtype"]


class GradScaler:
    """Dynamic loss scaling (torch.amp.GradScaler's rule): scale the loss, unscale the gradients,
    skip a step whose gradients overflowed and halve the scale; double it after
    ``growth_interval`` steps without overflow."""

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True):
        self.scale_value, self.growth_factor, self.backoff_factor = float(init_scale), growth_factor, backoff_factor
        self.growth_interval, self.enabled = int(growth_interval), enabled
        self._good_steps, self._found_inf, self.skipped, self._unscaled = 0, False, 0, False

    def scale(self, loss):
        return loss * self.scale_value if self.enabled else loss

    def unscale_(self, optimizer) -> bool:
        """Divide every gradient by the scale in place (once per step: call it before clipping, as
        with torch); True when all are finite (one host sync)."""
        from .device import array_module
        if not self.enabled or self._unscaled:
            return not self._found_inf
        finite = True
        inv = 1.0 / self.scale_value
        flags = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    g = p.grad.data
                    g *= inv
                    flags.append(array_module(g).isfinite(g).all())
        if flags:
            xp = array_module(flags[0])
            finite = bool(xp.stack(flags).all()) if hasattr(flags[0], "shape") else all(flags)
        self._found_inf, self._unscaled = not finite, True
        return finite

    def step(self, optimizer) -> bool:
        """``optimizer.step()`` on the unscaled gradients unless they overflowed; True if it stepped."""
        if not self.enabled:
            optimizer.step()
            return True
        self.unscale_(optimizer)
        self._unscaled = False
        if self._found_inf:
            self.skipped += 1
            return False
        optimizer.step()
        return True

    def update(self) -> None:
        if not self.enabled:
            return
        if self._found_inf:
            self.scale_value *= self.backoff_factor
            self._good_steps = 0
        else:
            self._good_steps += 1
            if self._good_steps >= self.growth_interval:
                self.scale_value *= self.growth_factor
                self._good_steps = 0
        if not math.isfinite(self.scale_value) or self.scale_value <= 0:
            raise RuntimeError(f"GradScaler: the scale became {self.scale_value}")
