"""Elementwise ops. Each returns ``make_result(out, parents, backward, name)``;
``backward(g)`` returns d(loss)/d(parent) for every parent, in order.

Broadcasting is NumPy's: a backward may return a gradient of the broadcast
shape, and the engine sums it back to the parent's shape (``unbroadcast``).
"""
import math
import numbers

from ...backend import xp
from ...device import array_module, check_same_device, device_of
from ..tensor import Tensor, make_result


def _broadcast(fn, x, y, op):
    try:
        return fn(x, y)
    except ValueError:
        raise ValueError(f"{op}: shapes {tuple(x.shape)} and {tuple(y.shape)} cannot be broadcast together") from None


def _pair(a, b):
    """Turn ``b`` into a Tensor and unify dtypes as PyTorch does (int op float -> float)."""
    if not isinstance(b, Tensor):
        b = Tensor(b, device=None if a.data.__class__ is xp.ndarray else device_of(a.data))
    elif a.data.__class__ is not b.data.__class__ or a.data.__class__ is not xp.ndarray:
        check_same_device("op", a.data, b.data)           # NumPy with CuPy, or two GPUs
    if a.data.dtype != b.data.dtype:
        ka, kb = a.data.dtype.kind, b.data.dtype.kind
        if ka == "f" and kb != "f":
            b = Tensor(b.data.astype(a.data.dtype))
        elif kb == "f" and ka != "f":
            a = Tensor(a.data.astype(b.data.dtype))
    return a, b


def _const(a, c):
    """A number operand: keep the tensor's float dtype (float32 * 2.0 stays float32).

    NumPy scalars (``np.sqrt(d)`` is a float64) become Python numbers first, which NumPy
    treats as weak: ``x_float32 / np.sqrt(64)`` stays float32, as in torch.
    """
    if isinstance(c, xp.generic):
        c = c.item()
    if a.data.dtype.kind != "f" and isinstance(c, float):
        a = Tensor(a.data.astype(xp.float32))
    return a, c


# ------------------------------------------------------------------ arithmetic
def add(a, b):
    if isinstance(b, numbers.Number):
        a, b = _const(a, b)
        return make_result(a.data + b, (a,), lambda g: (g,), "add")
    a, b = _pair(a, b)
    return make_result(_broadcast(xp.add, a.data, b.data, "add"), (a, b), lambda g: (g, g), "add")


def sub(a, b):
    if isinstance(b, numbers.Number):
        a, b = _const(a, b)
        return make_result(a.data - b, (a,), lambda g: (g,), "sub")
    a, b = _pair(a, b)
    return make_result(_broadcast(xp.subtract, a.data, b.data, "sub"), (a, b), lambda g: (g, -g), "sub")


def rsub(a, b):  # b - a
    if isinstance(b, numbers.Number):
        a, b = _const(a, b)
        return make_result(b - a.data, (a,), lambda g: (-g,), "rsub")
    return sub(*reversed(_pair(a, b)))


def neg(a):
    return make_result(-a.data, (a,), lambda g: (-g,), "neg")


def mul(a, b):
    if isinstance(b, numbers.Number):
        a, b = _const(a, b)
        return make_result(a.data * b, (a,), lambda g: (g * b,), "mul")
    a, b = _pair(a, b)

    def backward(g):  # d(ab)/da = b, d(ab)/db = a
        return (g * b.data if a.requires_grad else None,
                g * a.data if b.requires_grad else None)

    return make_result(_broadcast(xp.multiply, a.data, b.data, "mul"), (a, b), backward, "mul")


def div(a, b):
    if isinstance(b, numbers.Number):
        a, b = _const(a, float(b))
        return make_result(a.data / b, (a,), lambda g: (g / b,), "div")
    a, b = _pair(a, b)
    if a.data.dtype.kind != "f":
        a, b = Tensor(a.data.astype(xp.float32)), Tensor(b.data.astype(xp.float32))
    out = _broadcast(xp.true_divide, a.data, b.data, "div")

    def backward(g):  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -out/b
        gb = -g * out / b.data if b.requires_grad else None
        return (g / b.data if a.requires_grad else None, gb)

    return make_result(out, (a, b), backward, "div")


def rdiv(a, b):  # b / a
    if isinstance(b, numbers.Number):
        a, b = _const(a, float(b))
        if a.data.dtype.kind != "f":
            a = Tensor(a.data.astype(xp.float32))
        out = b / a.data
        return make_result(out, (a,), lambda g: (-g * out / a.data,), "rdiv")
    b, a = _pair(Tensor(b) if not isinstance(b, Tensor) else b, a)
    return div(b, a)


def pow(a, b):
    if isinstance(b, numbers.Number):
        a, b = _const(a, b)
        out = a.data ** b
        if b == 0:  # x^0 = 1 has gradient 0, also at x = 0 (not 0 * inf)
            return make_result(out, (a,), lambda g: (None,), "pow")
        return make_result(out, (a,), lambda g: (g * b * a.data ** (b - 1),), "pow")
    a, b = _pair(a, b)
    out = _broadcast(xp.power, a.data, b.data, "pow")

    def backward(g):  # d(a^b)/da = b a^(b-1), d(a^b)/db = a^b log a (0 where a=0, b>=0, as torch)
        ga = gb = None
        with xp.errstate(divide="ignore", invalid="ignore"):
            if a.requires_grad:
                ga = xp.where(b.data == 0, 0, g * b.data * a.data ** (b.data - 1))
            if b.requires_grad:
                gb = xp.where((a.data == 0) & (b.data >= 0), 0, g * out * xp.log(a.data))
        return ga, gb

    return make_result(out, (a, b), backward, "pow")


def rpow(a, b):  # b ** a, b a number
    if isinstance(b, numbers.Number):
        a, b = _const(a, float(b))
        out = b ** a.data
        return make_result(out, (a,), lambda g: (g * out * math.log(b),), "rpow")
    b, a = _pair(Tensor(b) if not isinstance(b, Tensor) else b, a)
    return pow(b, a)


# ----------------------------------------------------------- unary functions
def exp(a):
    out = xp.exp(a.data)
    return make_result(out, (a,), lambda g: (g * out,), "exp")


def log(a):
    return make_result(xp.log(a.data), (a,), lambda g: (g / a.data,), "log")


def sqrt(a):
    out = xp.sqrt(a.data)
    return make_result(out, (a,), lambda g: (g * 0.5 / out,), "sqrt")


def tanh(a):
    out = xp.tanh(a.data)
    return make_result(out, (a,), lambda g: (g * (1 - out * out),), "tanh")


def _sigmoid(x):
    # exp of a non-positive number only: no overflow for large |x|
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid(a):
    out = _sigmoid(a.data)
    return make_result(out, (a,), lambda g: (g * out * (1 - out),), "sigmoid")


def relu(a):
    out = xp.maximum(a.data, 0)
    return make_result(out, (a,), lambda g: (g * (a.data > 0),), "relu")


def abs(a):
    return make_result(xp.abs(a.data), (a,), lambda g: (g * xp.sign(a.data),), "abs")


def silu_forward(x):
    """x * sigmoid(x) on an array -> (y, s): s = sigmoid(x) is what the backward needs."""
    s = _sigmoid(x)
    return x * s, s


def silu(a):
    y, s = silu_forward(a.data)
    return make_result(y, (a,), lambda g: (g * (s * (1 + a.data * (1 - s))),), "silu")


# Cephes' rational approximations (S. Moshier, public domain), accurate to ~1e-16:
# erf(x) = x T(x^2)/U(x^2) for |x| <= 1; erfc(x) = exp(-x^2) P(x)/Q(x) for 1 < x < 8, R(x)/S(x) beyond.
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
          7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
          2.26290000613890934246e4, 4.92673942608635921086e4)
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
           9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
           9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
           1.65666309194161350182e3, 5.57535340817727675546e2)
_ERFC_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0,
           6.16021097993053585195e0, 7.40974269950448939160e0, 2.97886665372100240670e0)
_ERFC_S = (1.0, 2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1,
           1.70814450747565897222e1, 9.60896809063285878198e0, 3.36907645100081516050e0)


def _poly(x, coefs):
    acc = xp.full_like(x, coefs[0])
    for c in coefs[1:]:
        acc = acc * x + c
    return acc


def erf(x):
    """The error function, vectorised (computed in float64, returned in x's dtype).

    >>> float(erf(xp.array([0.5]))[0])   # math.erf(0.5) = 0.5204998778130465
    0.5204998778130465
    """
    x64 = array_module(x).asarray(x, dtype=xp.float64)
    ax = xp.abs(x64)
    z = x64 * x64
    small = x64 * _poly(z, _ERF_T) / _poly(z, _ERF_U)
    mid = _poly(ax, _ERFC_P) / _poly(ax, _ERFC_Q)
    far = _poly(ax, _ERFC_R) / _poly(ax, _ERFC_S)
    with xp.errstate(under="ignore"):
        erfc = xp.exp(-z) * xp.where(ax < 8.0, mid, far)
    out = xp.where(ax <= 1.0, small, xp.sign(x64) * (1.0 - erfc))
    out = xp.where(xp.isinf(x64), xp.sign(x64), out)       # erf(+-inf) = +-1 (the ratios above are inf/inf)
    return out.astype(x.dtype if hasattr(x, "dtype") else xp.result_type(x), copy=False)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu(a, approximate: str = "none"):
    """GELU, exact (``x Phi(x)``) or with ``approximate="tanh"`` (GPT-2's)."""
    x = a.data
    if approximate == "tanh":
        t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
        out = 0.5 * x * (1 + t)

        def backward(g):
            dinner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dinner),)
    elif approximate == "none":
        cdf = 0.5 * (1 + erf(x / math.sqrt(2.0)))
        out = x * cdf

        def backward(g):  # Phi(x) + x phi(x)
            return (g * (cdf + x * xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)),)
    else:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return make_result(out, (a,), backward, "gelu")


def clamp(a, lo=None, hi=None):
    """Clip to [lo, hi]; bounds are numbers or tensors (tensor bounds get gradients too)."""
    if lo is None and hi is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if isinstance(lo, Tensor) or isinstance(hi, Tensor):
        return _clamp_tensors(a, lo, hi)
    out = xp.clip(a.data, lo, hi).astype(a.data.dtype, copy=False)

    def backward(g):  # gradient flows where min <= x <= max (PyTorch's rule at the edges)
        keep = xp.ones_like(a.data, dtype=bool)
        if lo is not None:
            keep &= a.data >= lo
        if hi is not None:
            keep &= a.data <= hi
        return (g * keep,)

    return make_result(out, (a,), backward, "clamp")


def _clamp_tensors(a, lo, hi):
    """clamp with tensor bounds: min(max(x, lo), hi), gradients routed as torch's clamp."""
    x = a.data
    m = array_module(x)
    lo_t = None if lo is None else (lo if isinstance(lo, Tensor) else Tensor(m.asarray(lo, dtype=x.dtype)))
    hi_t = None if hi is None else (hi if isinstance(hi, Tensor) else Tensor(m.asarray(hi, dtype=x.dtype)))
    check_same_device("clamp", x, *(t.data for t in (lo_t, hi_t) if t is not None))
    l_ = None if lo_t is None else lo_t.data
    h_ = None if hi_t is None else hi_t.data
    out = x
    try:
        if l_ is not None:
            out = xp.maximum(out, l_)
        if h_ is not None:
            out = xp.minimum(out, h_)
    except ValueError:
        raise ValueError(f"clamp: shapes {x.shape}, {xp.shape(l_)} and {xp.shape(h_)} cannot be broadcast together") from None
    out = out.astype(xp.result_type(*(t.data for t in (a, lo_t, hi_t) if t is not None)), copy=False)
    parents = tuple(t for t in (a, lo_t, hi_t) if t is not None)

    def backward(g):
        zero = xp.zeros_like(g, shape=())
        keep = True
        if l_ is not None:
            keep = keep & (x >= l_)
        if h_ is not None:
            keep = keep & (x <= h_)
        grads = [xp.where(keep, g, zero)]
        if l_ is not None:
            lo_wins = (x < l_) if h_ is None else (x < l_) & (l_ < h_)
            grads.append(xp.where(lo_wins, g, zero))
        if h_ is not None:
            hi_wins = (x > h_) if l_ is None else (x > h_) | (h_ < l_)
            grads.append(xp.where(hi_wins, g, zero))
        return tuple(grads)

    return make_result(out, parents, backward, "clamp")


def _max_or_min(a, b, pick, name):
    a, b = _pair(a, b)
    out = _broadcast(pick, a.data, b.data, name)

    def backward(g):  # to the larger (smaller) input; ties share it half and half, as PyTorch does
        win_a = pick(a.data, b.data) == a.data
        tie = a.data == b.data
        share = xp.where(tie, 0.5, 1.0).astype(g.dtype)
        return g * share * win_a, g * share * ((~win_a) | tie)

    return make_result(out, (a, b), backward, name)


def maximum(a, b):
    return _max_or_min(a, b, xp.maximum, "maximum")


def minimum(a, b):
    return _max_or_min(a, b, xp.minimum, "minimum")


# ---------------------------------------------------------- select and mask
def where(cond, a, b):
    """``a`` where ``cond`` else ``b``; either side may be a number."""
    ref = a if isinstance(a, Tensor) else b
    if not isinstance(ref, Tensor):
        ref = Tensor(a)
    m = array_module(ref.data, cond)
    c = cond.data if isinstance(cond, Tensor) else m.asarray(cond)
    c = c.astype(bool, copy=False)
    ta = a if isinstance(a, Tensor) else Tensor(m.asarray(a, dtype=ref.data.dtype))
    tb = b if isinstance(b, Tensor) else Tensor(m.asarray(b, dtype=ref.data.dtype))
    check_same_device("where", c, ta.data, tb.data)
    ta, tb = _pair(ta, tb)
    try:
        out = xp.where(c, ta.data, tb.data)
    except ValueError:
        raise ValueError(f"where: shapes {c.shape}, {ta.data.shape} and {tb.data.shape} cannot be broadcast together") from None

    def backward(g):
        zero = xp.zeros_like(g, shape=())
        return (xp.where(c, g, zero) if ta.requires_grad else None,
                xp.where(c, zero, g) if tb.requires_grad else None)

    return make_result(out, (ta, tb), backward, "where")


def masked_fill(a, mask, value):
    m = mask.data if isinstance(mask, Tensor) else array_module(a.data).asarray(mask)
    check_same_device("masked_fill", a.data, m)
    if m.dtype != bool:
        raise TypeError(f"masked_fill: mask must be a bool tensor, got dtype {m.dtype}")
    v = value.item() if isinstance(value, Tensor) else value
    try:
        out = xp.where(m, array_module(a.data).asarray(v, dtype=a.data.dtype), a.data)
    except ValueError:
        raise ValueError(f"masked_fill: mask shape {m.shape} does not broadcast to tensor shape {a.data.shape}") from None
    if out.shape != a.data.shape:
        raise ValueError(f"masked_fill: mask shape {m.shape} would enlarge tensor shape {a.data.shape}")
    return make_result(out, (a,), lambda g: (xp.where(m, xp.zeros_like(g, shape=()), g),), "masked_fill")


def compare(a, b, fn):
    """Comparisons give bool tensors and carry no gradient."""
    other = b.data if isinstance(b, Tensor) else b
    try:
        return Tensor(fn(a.data, other))
    except ValueError:
        raise ValueError(f"{fn.__name__}: shapes {a.data.shape} and {xp.shape(other)} cannot be broadcast together") from None
