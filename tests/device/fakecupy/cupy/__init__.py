"""A stand-in for CuPy on a CPU, to exercise scratchllm's device code paths without a GPU.

Arrays are NumPy arrays wrapped in ``ndarray``, which behaves like CuPy's where it matters:
NumPy functions dispatch to it (NEP-13/18), mixing it with a NumPy array is a TypeError,
implicit conversion to NumPy (``np.asarray``) is a TypeError, ``.get()`` copies to the host.
The CUDA kernels are replaced by NumPy versions of what they compute (looked up by name), so
this checks the Python glue around the kernels, not the CUDA C. A developer tool:

    PYTHONPATH=tests/device/fakecupy SCRATCHLLM_TEST_CUDA=1 pytest tests/device -q
"""
import types

import numpy as _np

__version__ = "0.0-fake"
_SYNC_ALLOWED = [True]
HOST_COPIES = [0]             # device -> host copies so far (.get(), .item(), bool(), ...): tests count them


def _un(x):
    """Our arrays -> NumPy; a NumPy array (not a scalar) -> TypeError, as CuPy."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _np.ndarray):
        raise TypeError(f"Unsupported type {type(x)} (a NumPy array mixed with a device array)")
    if isinstance(x, (list, tuple)):
        return type(x)(_un(v) for v in x)
    if isinstance(x, dict):
        return {k: _un(v) for k, v in x.items()}
    return x


def _wrap(r):
    if isinstance(r, _np.ndarray):
        return ndarray(r)
    if isinstance(r, _np.generic):
        return ndarray(_np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


def _host_copy():
    HOST_COPIES[0] += 1
    if not _SYNC_ALLOWED[0]:
        import cupyx
        raise cupyx.DeviceSynchronized("device -> host copy while synchronization is disallowed")


class _Flags:
    def __init__(self, a):
        self.c_contiguous, self.f_contiguous, self.owndata = a.flags.c_contiguous, a.flags.f_contiguous, a.flags.owndata


class ndarray:
    __array_priority__ = 100

    def __init__(self, a):
        self._a = a

    # ---- what marks a device array
    @property
    def __cuda_array_interface__(self):
        return {"shape": self._a.shape, "typestr": self._a.dtype.str, "version": 3}

    device = types.SimpleNamespace(id=0)

    @property
    def data(self):
        """The device pointer (here the host address of the buffer): what cuBLAS calls take."""
        return types.SimpleNamespace(ptr=self._a.ctypes.data)

    def get(self):
        _host_copy()
        return self._a.copy()

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()`")

    # ---- dispatch
    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        if ufunc.signature is not None:                  # CuPy: no NumPy gufunc (np.matmul) on its arrays
            return NotImplemented
        out = kw.pop("out", None)
        kw = _un(kw)
        if out is not None:
            kw["out"] = tuple(_un(o) for o in out)
        r = getattr(ufunc, method)(*_un(inputs), **kw)
        if out is not None and method == "__call__":
            return out[0] if len(out) == 1 else out           # the caller's own arrays
        return _wrap(r)

    def __array_function__(self, func, types_, args, kwargs):
        if func.__name__ in ("array2string", "array_repr", "array_str", "save", "savez"):
            raise TypeError(f"no implementation found for numpy.{func.__name__}")
        return _wrap(func(*_un(args), **_un(kwargs)))

    # ---- attributes
    shape = property(lambda s: s._a.shape)
    dtype = property(lambda s: s._a.dtype)
    ndim = property(lambda s: s._a.ndim)
    size = property(lambda s: s._a.size)
    itemsize = property(lambda s: s._a.itemsize)
    nbytes = property(lambda s: s._a.nbytes)
    strides = property(lambda s: s._a.strides)
    flags = property(lambda s: _Flags(s._a))
    base = property(lambda s: None if s._a.base is None else object())
    T = property(lambda s: ndarray(s._a.T))
    real = property(lambda s: ndarray(s._a.real))

    def __getattr__(self, name):
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            return _wrap(attr(*_un(args), **_un(kwargs)))
        return method

    def item(self):
        _host_copy()
        return self._a.item()

    def tolist(self):
        _host_copy()
        return self._a.tolist()

    def __bool__(self):
        _host_copy()
        return bool(self._a)

    def __float__(self):
        _host_copy()
        return float(self._a)

    def __int__(self):
        _host_copy()
        return int(self._a)

    __index__ = __int__

    def __len__(self):
        return len(self._a)

    def __repr__(self):
        return "fakecupy." + repr(self._a)

    def __getitem__(self, idx):
        return _wrap(self._a[_index(idx)])

    def __setitem__(self, idx, value):
        self._a[_index(idx)] = value._a if isinstance(value, ndarray) else value

    def __iter__(self):
        return (_wrap(v) for v in self._a)


def _index(idx):
    if isinstance(idx, tuple):
        return tuple(_index(i) for i in idx)
    return idx._a if isinstance(idx, ndarray) else idx


def _binary(ufunc, reflected=False, inplace=False):
    def op(self, other):
        if inplace:
            ufunc(self, other, out=(self,))
            return self
        return ufunc(other, self) if reflected else ufunc(self, other)
    return op


for _name, _uf in (("add", _np.add), ("sub", _np.subtract), ("mul", _np.multiply), ("truediv", _np.true_divide),
                   ("floordiv", _np.floor_divide), ("pow", _np.power), ("mod", _np.remainder),
                   ("and", _np.logical_and), ("or", _np.logical_or), ("xor", _np.bitwise_xor)):
    setattr(ndarray, f"__{_name}__", _binary(_uf))
    setattr(ndarray, f"__r{_name}__", _binary(_uf, reflected=True))
    if _name != "matmul":
        setattr(ndarray, f"__i{_name}__", _binary(_uf, inplace=True))
ndarray.__matmul__ = lambda s, o: _wrap(_np.matmul(_un(s), _un(o)))      # cupy.matmul (cuBLAS)
ndarray.__rmatmul__ = lambda s, o: _wrap(_np.matmul(_un(o), _un(s)))
for _name, _uf in (("lt", _np.less), ("le", _np.less_equal), ("gt", _np.greater), ("ge", _np.greater_equal),
                   ("eq", _np.equal), ("ne", _np.not_equal)):
    setattr(ndarray, f"__{_name}__", _binary(_uf))
ndarray.__and__ = _binary(_np.bitwise_and)
ndarray.__rand__ = _binary(_np.bitwise_and, reflected=True)
ndarray.__iand__ = _binary(_np.bitwise_and, inplace=True)
ndarray.__or__ = _binary(_np.bitwise_or)
ndarray.__ior__ = _binary(_np.bitwise_or, inplace=True)
ndarray.__neg__ = lambda s: _np.negative(s)
ndarray.__abs__ = lambda s: _np.abs(s)
ndarray.__invert__ = lambda s: _np.invert(s)
ndarray.__hash__ = None


# ---- module functions: NumPy's, with our arrays in and out; creations make device arrays
def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else ndarray(a._a.astype(dtype))
    return ndarray(_np.array(a, dtype=dtype, order=order))


def array(a, dtype=None, copy=True, order="K"):
    return ndarray(_np.array(a._a if isinstance(a, ndarray) else a, dtype=dtype, copy=True, order=order))


def ascontiguousarray(a, dtype=None):
    return ndarray(_np.ascontiguousarray(_un(a), dtype=dtype))


def asnumpy(a):
    return a.get() if isinstance(a, ndarray) else _np.asarray(a)


def _creator(fn):
    def make(*args, **kwargs):
        return ndarray(fn(*_un(args), **_un(kwargs)))
    return make


for _name in ("empty", "zeros", "ones", "full", "arange", "eye", "linspace", "tri"):
    globals()[_name] = _creator(getattr(_np, _name))


def __getattr__(name):        # every other NumPy function / constant / dtype
    attr = getattr(_np, name)
    if callable(attr) and not isinstance(attr, type):
        def fn(*args, **kwargs):
            return _wrap(attr(*_un(args), **_un(kwargs)))
        return fn
    return attr


# ---- random, cuda, memory
class _RandomState:
    def __init__(self, seed):
        self._rng = _np.random.default_rng(seed)

    def random_sample(self, size=None, dtype=float):
        return ndarray(self._rng.random(size, dtype=dtype))


random = types.SimpleNamespace(RandomState=_RandomState, seed=lambda s: None)


class _Device:
    def __init__(self, i=0):
        self.id = i

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def synchronize(self):
        pass


class _Pool:
    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


def get_default_memory_pool():
    return _Pool()


cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, runtimeGetVersion=lambda: 12000,
                                  getDeviceProperties=lambda i: {"name": b"fakecupy"}),
    Device=_Device, get_current_stream=lambda: types.SimpleNamespace(synchronize=lambda: None),
    device=types.SimpleNamespace(get_cublas_handle=lambda: 1))      # (cuBLAS: ../cupy_backends)


# ---- kernels: NumPy versions of what the CUDA code computes, by name
def _block_sum_rows(a):
    return a.sum(axis=-1)


def _norm_forward(x, w, b, y, xhat, rstd, D, eps, center, has_w, has_b):
    X = x._a.reshape(-1, int(D))
    mean = X.mean(1, keepdims=True) if int(center) else 0.0
    if int(center):
        mean = mean + (X - mean).mean(1, keepdims=True)
    rs = 1 / _np.sqrt(((X - mean) ** 2).mean(1, keepdims=True) + _np.float32(eps))
    h = (X - mean) * rs
    xhat._a[...] = h.reshape(xhat.shape)
    y._a[...] = (h * (w._a if int(has_w) else 1) + (b._a if int(has_b) else 0)).reshape(y.shape)
    rstd._a[...] = rs.reshape(rstd.shape)


def _norm_backward(g, xhat, rstd, w, dx, D, center, has_w):
    G, H = g._a.reshape(-1, int(D)), xhat._a.reshape(-1, int(D))
    dh = G * (w._a if int(has_w) else 1)
    m1 = dh.mean(1, keepdims=True) if int(center) else 0.0
    m2 = (dh * H).mean(1, keepdims=True)
    dx._a[...] = (rstd._a.reshape(-1, 1) * (dh - m1 - H * m2)).reshape(dx.shape)


def _softmax_rows(s, n, T, r0, causal, scale):
    S = s._a.reshape(-1, int(n))
    rows = _np.arange(S.shape[0]) % int(T) + int(r0)
    keep = _np.arange(int(n))[None, :] <= rows[:, None] if int(causal) else _np.ones(S.shape, bool)
    z = _np.where(keep, S * _np.float32(scale), -_np.inf)
    e = _np.exp(z - z.max(1, keepdims=True))
    S[...] = _np.where(keep, e / e.sum(1, keepdims=True), 0)


def _cross_entropy_rows(x, t, m_out, z_out, loss, C, ignore, eps):
    X, tt, C, eps = x._a, t._a, int(C), float(eps)
    m = X.max(1)
    z = _np.exp(X - m[:, None]).sum(1)
    m_out._a[...], z_out._a[...] = m, z
    log_z = _np.log(z)
    valid = tt != int(ignore)
    ok = valid & (tt >= 0) & (tt < C)
    picked = X[_np.arange(len(tt)), _np.where(ok, tt, 0)] - m
    val = (1 - eps) * (log_z - picked) + ((eps / C) * (C * log_z - (X - m[:, None]).sum(1)) if eps else 0)
    loss._a[...] = _np.where(valid, _np.where(ok, val, _np.nan), 0)


_RAW = {"norm_forward": _norm_forward, "norm_backward": _norm_backward, "softmax_rows": _softmax_rows,
        "cross_entropy_rows": _cross_entropy_rows}


class RawModule:
    def __init__(self, code=None, options=()):
        self.code = code

    def get_function(self, name):
        fn = _RAW[name]

        def launch(grid, block, args):
            return fn(*args)
        return launch


_C, _K = 0.7978845608028654, 0.044715


def _gelu_f(x):
    with _np.errstate(over="ignore"):
        return _gelu_f_(x)


def _gelu_f_(x):
    s = 1 / (1 + _np.exp(-2 * _C * (x + _K * x ** 3)))
    return (x * s).astype(x.dtype)


def _gelu_b(x, g):
    with _np.errstate(over="ignore"):
        return _gelu_b_(x, g)


def _gelu_b_(x, g):
    s = 1 / (1 + _np.exp(-2 * _C * (x + _K * x ** 3)))
    return (g * (s + s * (1 - s) * x * (2 * _C + 6 * _C * _K * x * x))).astype(x.dtype)


def _ce_b(x, mx, zs, t, coef, C, keep, spread):
    N = x.shape[0]
    p = _np.exp(x - mx[:, None]) / zs[:, None]
    onehot = _np.zeros_like(x)
    ok = (t >= 0) & (t < C)
    onehot[_np.arange(N)[ok], t[ok]] = 1
    return (coef[:, None] * (p - onehot * keep - spread)).astype(x.dtype)


def _adam(g, gsign, decay, l2, one_m_b1, b2, one_m_b2, step_size, bc2_sqrt, eps, p, m, v):
    gg = gsign * g + l2 * p
    p *= decay
    m += one_m_b1 * (gg - m)
    v[...] = b2 * v + one_m_b2 * gg * gg
    p -= step_size * m / (_np.sqrt(v) / bc2_sqrt + eps)


def _f32_to_bf16(x):
    """Round to nearest even on the bits, written apart from scratchllm's reference; NaN -> 0x7FC0."""
    u = x.astype(_np.float32).view(_np.uint32).astype(_np.uint64)
    keep, low = u >> 16, u & 0xFFFF
    up = (low > 0x8000) | ((low == 0x8000) & ((keep & 1) == 1))
    return _np.where(_np.isnan(x), 0x7FC0, keep + up).astype(_np.uint16)


def _bf16_to_f32(b):
    return (b.astype(_np.uint32) << 16).view(_np.float32)


_ELEMENTWISE = {"scratchllm_gelu_tanh_forward": _gelu_f, "scratchllm_gelu_tanh_backward": _gelu_b,
                "scratchllm_ce_backward": _ce_b, "scratchllm_adam_update": _adam,
                "scratchllm_f32_to_bf16": _f32_to_bf16, "scratchllm_bf16_to_f32": _bf16_to_f32}


class ElementwiseKernel:
    def __init__(self, in_params, out_params, operation, name):
        self.fn, self.n_out, self.name = _ELEMENTWISE[name], len(out_params.split(",")), name

    def __call__(self, *args):
        for a in args:
            if isinstance(a, _np.ndarray):
                raise TypeError(f"{self.name}: a NumPy array argument")
        plain = [a._a if isinstance(a, ndarray) else a for a in args]
        r = self.fn(*plain)
        return None if r is None else ndarray(r)
