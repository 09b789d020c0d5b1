"""Setting a run up: the run folder's checks, the model, the optimizer.

``check_run_folder`` enforces "nothing overwritten": a fresh run only starts in a missing or
empty folder (or one holding the very same run, which is then continued); ``--resume``
needs a folder holding a run, and may not change what the run is (its architecture, data
and tokenizer).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ScratchLLMError
from .checkpoint import STATE, TRAIN_CONFIG, find_checkpoint, read_json
from .config import TrainConfig, identity_diff


def saved_config(run_dir):
    """The ``TrainConfig`` of the run in ``run_dir``, or None when it holds none."""
    path = Path(run_dir) / TRAIN_CONFIG
    if not path.is_file():
        return None
    return TrainConfig.from_dict(read_json(path, "run config"), source=str(path))


def check_run_folder(cfg: TrainConfig, run_dir, resume: bool):
    """Decide how the run starts: returns the checkpoint folder to continue from, or None.

    Raises ``ScratchLLMError`` (and touches nothing) when the folder holds something else.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ScratchLLMError(f"output path {run_dir} is a file, not a folder")
    saved = saved_config(run_dir) if run_dir.is_dir() else None
    ckpt = find_checkpoint(run_dir, "latest") if saved is not None else None
    if saved is None:
        if resume:
            raise ScratchLLMError(f"nothing to resume: {run_dir} holds no training run")
        if run_dir.is_dir() and any(not _ours(f) for f in run_dir.iterdir()):
            raise ScratchLLMError(f"output folder {run_dir} is not empty and holds no scratchllm run; "
                                  f"choose a new folder with --out")
        return None
    if ckpt is None and resume:
        raise ScratchLLMError(f"nothing to resume: {run_dir} holds no checkpoint "
                              f"({run_dir / 'latest' / STATE} not found); run the same command "
                              f"without --resume to start the run from step 0")
    if ckpt is None and (find_checkpoint(run_dir, "best") is not None or (run_dir / "best").exists()):
        raise ScratchLLMError(f"{run_dir} holds best/ but no latest/ checkpoint to continue from; "
                              f"choose another --out (nothing was overwritten)")
    diff = identity_diff(saved, cfg)
    if diff:
        what = "resume it as" if resume else "start"
        raise ScratchLLMError(f"output folder {run_dir} holds a different run (preset {saved.preset}); "
                              f"cannot {what} this one: {'; '.join(diff)}. Choose another --out"
                              + ("" if resume else " or --resume it unchanged"))
    if not resume:
        changed = [k for k, v in cfg.to_dict().items() if v != getattr(saved, k)]
        if changed:
            raise ScratchLLMError(f"output folder {run_dir} already holds a run with other settings "
                                  f"({', '.join(changed)}); continue it with --resume or choose another --out")
    return ckpt


def _ours(path: Path) -> bool:
    """The lock file and a crashed write's temporary files (of a run killed before its config)."""
    from .lock import LOCK_NAME
    return path.is_file() and (path.name == LOCK_NAME or (path.name.startswith(".") and path.name.endswith(".tmp")))


def check_checkpoint_matches(ckpt, cfg: TrainConfig) -> None:
    """The checkpoint's own config must have the run's identity (e.g. after a manual copy)."""
    path = Path(ckpt) / TRAIN_CONFIG
    saved = TrainConfig.from_dict(read_json(path, "checkpoint config"), source=str(path))
    diff = identity_diff(saved, cfg)
    if diff:
        raise ScratchLLMError(f"checkpoint {ckpt} is of another architecture or data: {'; '.join(diff)}")
    if not (Path(ckpt) / STATE).is_file():
        raise ScratchLLMError(f"checkpoint {ckpt} is incomplete ({STATE} missing)")


# ------------------------------------------------------------------ model
def model_config_dict(cfg: TrainConfig, vocab_size: int) -> dict:
    """The ``build_model`` config for a fresh model of ``cfg``'s architecture."""
    if cfg.arch == "gpt":
        from .config import GPT_RECIPE_KEYS
        return {"model_type": "gpt", "vocab_size": vocab_size, "block_size": cfg.block_size,
                "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
                "dropout": cfg.dropout, "bias": cfg.bias, **{k: getattr(cfg, k) for k in GPT_RECIPE_KEYS}}
    return {"model_type": "llama", "vocab_size": vocab_size, "dim": cfg.n_embd, "n_layers": cfg.n_layer,
            "n_heads": cfg.n_head, "n_kv_heads": cfg.n_kv_head or cfg.n_head, "multiple_of": 32,
            "max_seq_len": cfg.block_size, "dropout": cfg.dropout}


def build_fresh_model(cfg: TrainConfig, vocab_size: int):
    """A newly initialised model; the weights depend on ``cfg.seed`` only."""
    from ..autograd.random import manual_seed
    from ..models import build_model
    manual_seed(cfg.seed)
    return build_model(model_config_dict(cfg, vocab_size))


def load_model_checked(path, what: str):
    from .. import load_model
    try:
        return load_model(str(path))
    except FileNotFoundError as e:
        raise ScratchLLMError(f"{what} not found: {e.filename or path}") from None


def context_length(model) -> int:
    c = model.config
    return int(getattr(c, "block_size", None) or getattr(c, "max_seq_len"))


def check_block_size(model, cfg: TrainConfig) -> None:
    n = context_length(model)
    if cfg.block_size > n:
        raise ScratchLLMError(f"block_size {cfg.block_size} is longer than the model's context of {n} tokens "
                              f"({cfg.init_from}); set block_size={n} or less")


# ------------------------------------------------------------------ optimizer
def make_optimizer(model, cfg: TrainConfig):
    """AdamW with weight decay on matrices (ndim >= 2) only, not on biases and norm gains.

    ``optimizer="muon"``: ``MuonWithAdamW``, Muon on the hidden matrices (group 0, ``lr_scale =
    muon_lr / lr`` so the schedule moves both), AdamW on embeddings, head, norms and biases."""
    if cfg.optimizer == "muon":
        from ..optim.muon import MuonWithAdamW, muon_param_groups
        groups = muon_param_groups(model, muon_lr=cfg.muon_lr, adam_lr=cfg.lr, weight_decay=cfg.weight_decay)
        for group in groups:
            group["lr_scale"] = cfg.muon_lr / cfg.lr if group["use_muon"] else 1.0
        return MuonWithAdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8,
                             momentum=cfg.muon_momentum)
    from ..optim import AdamW
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)
