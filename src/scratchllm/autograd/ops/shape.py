"""Ops that move elements without computing: views, joins, splits and indexing."""
import math

from ...backend import xp
from ...device import array_module, check_same_device, device_of, is_device_array, to_device
from ..tensor import Tensor, make_result


def reshape(a, shape):
    try:
        out = a.data.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot view shape {a.data.shape} ({a.data.size} elements) as {tuple(shape)}") from None
    src = a.data.shape
    return make_result(out, (a,), lambda g: (g.reshape(src),), "reshape")


def flatten(a, start_dim=0, end_dim=-1):
    shape = a.data.shape
    if not shape:
        return reshape(a, (1,))
    s, e = start_dim % len(shape), end_dim % len(shape)
    return reshape(a, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


def transpose(a, d0, d1):
    return make_result(a.data.swapaxes(d0, d1), (a,), lambda g: (g.swapaxes(d0, d1),), "transpose")


def permute(a, dims):
    if sorted(d % max(a.data.ndim, 1) for d in dims) != list(range(a.data.ndim)):
        raise ValueError(f"permute: dims {tuple(dims)} are not a permutation of the {a.data.ndim} dims of shape {a.data.shape}")
    inverse = tuple(xp.argsort([d % a.data.ndim for d in dims]))
    return make_result(a.data.transpose(dims), (a,), lambda g: (g.transpose(inverse),), "permute")


def expand(a, shape):
    shape = tuple(a.data.shape[i - (len(shape) - a.data.ndim)] if n == -1 else n for i, n in enumerate(shape))
    try:
        out = xp.broadcast_to(a.data, shape)
    except ValueError:
        raise ValueError(f"expand: shape {a.data.shape} cannot be expanded to {shape}") from None
    return make_result(out, (a,), lambda g: (g,), "expand")  # the engine sums g back to a's shape


def squeeze(a, dim=None):
    shape = a.data.shape
    if dim is None:
        new = tuple(n for n in shape if n != 1)
    else:
        dims = {d % len(shape) for d in ((dim,) if isinstance(dim, int) else dim)} if shape else set()
        new = tuple(n for i, n in enumerate(shape) if not (i in dims and n == 1))
    return make_result(a.data.reshape(new), (a,), lambda g: (g.reshape(shape),), "squeeze")


def unsqueeze(a, dim):
    shape = a.data.shape
    return make_result(xp.expand_dims(a.data, dim), (a,), lambda g: (g.reshape(shape),), "unsqueeze")


def contiguous(a):
    return make_result(array_module(a.data).ascontiguousarray(a.data), (a,), lambda g: (g,), "contiguous")


def move(a, device: str):
    """``a`` copied to ``device`` ("cpu" / "cuda:N"); the gradient goes back to ``a``'s device."""
    src = device_of(a.data)
    if device == src:
        return a
    return make_result(to_device(a.data, device), (a,), lambda g: (to_device(g, src),), "to")


def cast(a, dtype):
    dtype = xp.dtype(dtype)
    if dtype == a.data.dtype:
        return a
    out = a.data.astype(dtype)
    if dtype.kind != "f":
        return Tensor(out)  # integer results carry no gradient
    src = a.data.dtype
    return make_result(out, (a,), lambda g: (g.astype(src),), "to")


def _slice_along(a, start, stop, dim):
    index = (slice(None),) * dim + (slice(start, stop),)
    shape = a.data.shape

    def backward(g):
        gx = xp.zeros_like(g, shape=shape)
        gx[index] = g
        return (gx,)

    return make_result(a.data[index], (a,), backward, "split")


def split(a, split_size_or_sections, dim=0):
    """Pieces of ``split_size`` (last one shorter) or of the listed sizes, as torch.split."""
    dim = dim % a.data.ndim
    n = a.data.shape[dim]
    if isinstance(split_size_or_sections, int):
        sizes = [min(split_size_or_sections, n - s) for s in range(0, n, split_size_or_sections)]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to {n}, the length of dim {dim} of shape {a.data.shape}")
    out, start = [], 0
    for s in sizes:
        out.append(_slice_along(a, start, start + s, dim))
        start += s
    return tuple(out)


def chunk(a, chunks, dim=0):
    n = a.data.shape[dim % a.data.ndim]
    return split(a, max(1, -(-n // chunks)), dim)


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    check_same_device("cat", *(t.data for t in tensors))
    try:
        out = xp.concatenate([t.data for t in tensors], axis=dim)
    except ValueError:
        raise ValueError(f"cat: shapes {[t.data.shape for t in tensors]} do not match outside dim {dim}") from None
    bounds = xp.cumsum([t.data.shape[dim] for t in tensors])[:-1].tolist()
    return make_result(out, tuple(tensors), lambda g: tuple(xp.split(g, bounds, axis=dim)), "cat")


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    check_same_device("stack", *(t.data for t in tensors))
    try:
        out = xp.stack([t.data for t in tensors], axis=dim)
    except ValueError:
        raise ValueError(f"stack: all shapes must be equal, got {[t.data.shape for t in tensors]}") from None
    d = dim % out.ndim
    return make_result(out, tuple(tensors), lambda g: tuple(xp.moveaxis(g, d, 0)), "stack")


def _plain_index(index):
    """Tensors inside an index become arrays; True if the index is advanced (arrays/lists)."""
    items = index if isinstance(index, tuple) else (index,)
    items = tuple(i.data if isinstance(i, Tensor) else i for i in items)
    advanced = any(isinstance(i, (xp.ndarray, list)) or is_device_array(i) for i in items)
    return (items if isinstance(index, tuple) else items[0]), advanced


def getitem(a, index):
    """Basic slicing (a view) or integer/bool-array indexing (a gather).

    Backward writes g into zeros at the same place; for repeated integer indices
    the contributions are added (``np.add.at``), as a scatter-add.
    """
    index, advanced = _plain_index(index)
    try:
        out = a.data[index]
    except IndexError as e:
        raise IndexError(f"index into tensor of shape {a.data.shape}: {e}") from None
    shape = a.data.shape

    def backward(g):
        gx = xp.zeros_like(g, shape=shape)
        if advanced and is_device_array(gx):
            import cupyx                                  # CuPy's np.add.at: a scatter-add on the GPU
            cupyx.scatter_add(gx, index, g)
        elif advanced:
            xp.add.at(gx, index, g)
        else:
            gx[index] = g
        return (gx,)

    return make_result(out, (a,), backward, "index")


def triu(a, diagonal=0):
    return make_result(xp.triu(a.data, diagonal), (a,), lambda g: (xp.triu(g, diagonal),), "triu")


def tril(a, diagonal=0):
    return make_result(xp.tril(a.data, diagonal), (a,), lambda g: (xp.tril(g, diagonal),), "tril")
