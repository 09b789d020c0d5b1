"""scratchllm: a large language model built from scratch on NumPy.

>>> import scratchllm as sl
>>> x = sl.Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
>>> (x @ x).sum().backward(); x.grad.shape
(2, 2)
"""
from .autograd import *  # noqa: F401,F403  (Tensor, Scalar, no_grad, zeros, ... : see autograd.__all__)
from . import amp, cuda  # noqa: F401  (sl.cuda.is_available(): imports CuPy only when called)
from . import nn
from . import optim
from .io.checkpoint import save, load
from . import models
from .io.load import load_model
from .tokenizers import BPETokenizer, load_tokenizer

__version__ = "0.1.0"
