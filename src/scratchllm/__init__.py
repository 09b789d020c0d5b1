"""scratchllm: a large language model built from scratch on NumPy.

>>> import scratchllm as sl
>>> x = sl.Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
>>> (x @ x).sum().backward(); x.grad.shape
(2, 2)
"""
from .autograd import *  # noqa: F401,F403
from .autograd import (Tensor, no_grad, enable_grad, manual_seed, Generator, cat, stack, where,
                       einsum, zeros, ones, randn, rand, arange, float32, float64, int64)
from .autograd import Scalar, grad_check, draw_graph
from . import nn
from . import optim
from .io.checkpoint import save, load
from . import models
from .io.load import load_model
from .tokenizers import BPETokenizer, load_tokenizer

__version__ = "0.1.0"
