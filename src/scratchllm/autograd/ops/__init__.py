"""Every differentiable op: forward and backward side by side, one small function each."""
from .elementwise import (add, sub, rsub, mul, div, rdiv, pow, rpow, neg, exp, log, sqrt, tanh,
                          sigmoid, relu, gelu, silu, abs, clamp, maximum, minimum, where,
                          masked_fill, compare, erf)
from .reduce import sum, mean, var, std, amax, amin, max_min, softmax, log_softmax
from .shape import (reshape, flatten, transpose, permute, expand, squeeze, unsqueeze, split, chunk,
                    cat, stack, getitem, triu, tril, contiguous, cast, move)
from .linalg import matmul, einsum
