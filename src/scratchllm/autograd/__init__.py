"""Automatic differentiation: ``Scalar`` (the teaching engine) and ``Tensor``."""
from .dtypes import float16, float32, float64, int32, int64, uint8, bool_
from .grad_mode import no_grad, enable_grad, is_grad_enabled, set_grad_enabled
from .random import Generator, manual_seed, default_generator
from .tensor import Tensor
from .ops import cat, stack, where, einsum, matmul, maximum, minimum, erf
from .factory import (tensor, zeros, ones, full, empty, zeros_like, ones_like, eye, arange,
                      randn, rand, randint)
from .scalar import Scalar
from .gradcheck import grad_check
from .graphviz import draw_graph

__all__ = ["float16", "float32", "float64", "int32", "int64", "uint8", "bool_",
           "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled",
           "Generator", "manual_seed", "default_generator", "Tensor",
           "cat", "stack", "where", "einsum", "matmul", "maximum", "minimum", "erf",
           "tensor", "zeros", "ones", "full", "empty", "zeros_like", "ones_like", "eye", "arange",
           "randn", "rand", "randint", "Scalar", "grad_check", "draw_graph"]
