"""A PyTorch-eager GPT-2 with scratchllm's parameter names (nanoGPT's model).

Same architecture as ``scratchllm.models.GPT``: learned position embeddings,
pre-LayerNorm blocks, fused q/k/v projection ``c_attn``, GELU MLP of width
4*n_embd, final LayerNorm, and an lm head tied to the token embedding. The
names are HF's (``transformer.h.0.attn.c_attn.weight`` ...) and every Linear
stores its weight as (out, in), exactly as scratchllm does, so a scratchllm
``state_dict()`` copies over with no transposes:

    >>> peer = build_torch_gpt(our_model.config)               # doctest: +SKIP
    >>> load_from_scratchllm(peer, our_model.state_dict())     # doctest: +SKIP

torch is imported inside the functions only.
"""
import math


def _config_value(config, *names, default=None):
    """First attribute of ``config`` among ``names`` (configs name things differently)."""
    for name in names:
        if hasattr(config, name):
            return getattr(config, name)
    if default is not None:
        return default
    raise AttributeError(f"GPT config {type(config).__name__} has none of {names}")


def build_torch_gpt(config):
    """A ``torch.nn.Module`` GPT with the shape of a scratchllm ``GPTConfig``."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    n_layer = _config_value(config, "n_layer")
    n_head = _config_value(config, "n_head")
    n_embd = _config_value(config, "n_embd")
    vocab = _config_value(config, "vocab_size")
    block = _config_value(config, "block_size", "n_positions")
    bias = bool(_config_value(config, "bias", default=True))
    eps = float(_config_value(config, "layer_norm_epsilon", "layer_norm_eps", "eps", default=1e-5))
    act = _config_value(config, "activation", "activation_function", default="gelu_new")  # GPT-2's tanh GELU
    approximate = "tanh" if str(act) in ("gelu_new", "gelu_tanh", "tanh", "gelu_pytorch_tanh") else "none"
    positional = _config_value(config, "positional", default="learned")
    if positional != "learned":
        raise ValueError(f"the torch GPT peer has learned positions only, config asks for {positional!r}")

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
            self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(n_embd, dim=2)
            q = q.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, n_head, T, head_dim)
            k = k.view(B, T, n_head, C // n_head).transpose(1, 2)
            v = v.view(B, T, n_head, C // n_head).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
            self.gelu = nn.GELU(approximate=approximate)
            self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)

        def forward(self, x):
            return self.c_proj(self.gelu(self.c_fc(x)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd, eps=eps, bias=bias)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(n_embd, eps=eps, bias=bias)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class TorchGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(vocab, n_embd),
                wpe=nn.Embedding(block, n_embd),
                h=nn.ModuleList([Block() for _ in range(n_layer)]),
                ln_f=nn.LayerNorm(n_embd, eps=eps, bias=bias),
            ))
            self.lm_head = nn.Linear(n_embd, vocab, bias=False)
            self.lm_head.weight = self.transformer.wte.weight  # tied, as GPT-2
            self.apply(self._init)
            for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

        @staticmethod
        def _init(module):
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)

        def forward(self, idx, targets=None):
            B, T = idx.shape
            pos = torch.arange(T, dtype=torch.long, device=idx.device)
            x = self.transformer.wte(idx) + self.transformer.wpe(pos)
            for block in self.transformer.h:
                x = block(x)
            logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)
            if targets is None:
                return logits
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
            return logits, loss

    return TorchGPT()


def load_from_scratchllm(peer, state_dict) -> None:
    """Copy a scratchllm GPT ``state_dict()`` (name -> numpy array) into ``peer``.

    Raises ``KeyError`` naming the parameters that do not line up.
    """
    import torch

    own = peer.state_dict()
    missing = [k for k in own if k not in state_dict and k != "lm_head.weight"]
    extra = [k for k in state_dict if k not in own]
    if missing or extra:
        raise KeyError(f"torch peer and scratchllm GPT disagree: missing {missing[:5]}, unexpected {extra[:5]}")
    with torch.no_grad():
        for name, tensor in own.items():
            if name not in state_dict:
                continue  # the tied lm_head
            src = torch.from_numpy(state_dict[name].astype("float32", copy=True))
            if tuple(src.shape) != tuple(tensor.shape):
                raise KeyError(f"{name}: scratchllm shape {tuple(src.shape)} vs torch {tuple(tensor.shape)}")
            tensor.copy_(src)
    if "lm_head.weight" in state_dict and "transformer.wte.weight" in state_dict:
        import numpy as np
        if not np.array_equal(state_dict["lm_head.weight"], state_dict["transformer.wte.weight"]):
            raise KeyError("scratchllm GPT has an untied lm_head.weight; the torch peer ties it to wte")


def configure_adamw(peer, lr, betas, weight_decay, eps=1e-8):
    """torch AdamW with nanoGPT's two groups: decay on >= 2-D weights, none on biases/norms."""
    import torch

    params = [p for p in peer.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=None)
