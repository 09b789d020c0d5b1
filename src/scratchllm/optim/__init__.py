"""Optimizers with torch.optim's names and semantics: ``SGD``, ``Adam``, ``AdamW``, schedules."""
from .optimizer import Optimizer
from .sgd import SGD
from .adam import Adam, AdamW
from . import schedules
from .schedules import LambdaLR, constant, warmup_cosine, warmup_stable_decay, set_lr
from .muon import Muon, MuonWithAdamW, muon_param_groups

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "schedules", "LambdaLR", "constant",
           "warmup_cosine", "warmup_stable_decay", "set_lr", "Muon", "MuonWithAdamW", "muon_param_groups"]
