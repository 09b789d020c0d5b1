"""LoRA (Hu et al. 2021): train a low-rank update of chosen Linear layers, the base frozen.

    y = x W^T + b  +  (alpha / r) · dropout(x) A^T B^T         A: (r, in), B: (out, r)
    merged:  W' = W + (alpha / r) · B A                          (unmerge subtracts it again)

A starts as torch's Linear default (kaiming-uniform, a=sqrt(5)), B at zero, so a fresh adapter
changes nothing. Every other parameter gets ``requires_grad=False``: no gradient is computed
for it and the optimizer (built from the trainable parameters) holds no state for it.

Adapters are saved alone, in HF PEFT's layout, so ``peft.PeftModel.from_pretrained(hf_model,
folder)`` loads them onto the transformers model, and a PEFT adapter loads here::

    folder/adapter_config.json         {"peft_type": "LORA", "r": 8, "lora_alpha": 16, ...}
    folder/adapter_model.safetensors   base_model.model.transformer.h.0.attn.c_attn.lora_A.weight
                                       base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight

Names: GPT-2's modules are HF's own (c_attn, c_proj, c_fc; HF's Conv1D stores W transposed,
PEFT then sets ``fan_in_fan_out`` — A and B themselves keep the Linear shapes above). Llama's
Meta names map to HF's: wq/wk/wv/wo -> self_attn.q_proj/k_proj/v_proj/o_proj, w1/w2/w3 ->
mlp.gate_proj/down_proj/up_proj. HF permutes the rows of q_proj/k_proj (half-split RoPE), so B
of those two is row-permuted on the way in and out (A is untouched).

>>> cfg = LoRAConfig(r=4, alpha=8, targets=("c_attn",))
>>> names = apply_lora(model, cfg)          # ['transformer.h.0.attn.c_attn', ...]
>>> save_adapter(model, "adapter/")          # then: with merged(model): model.generate(...)
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field

from ..autograd.random import default_generator
from ..backend import xp
from ..errors import ScratchLLMError
from ..nn import Linear, Module
from ..nn import functional as F

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# short / HF / Meta target names -> our module's last name, per architecture
_LLAMA_HF = {"wq": "self_attn.q_proj", "wk": "self_attn.k_proj", "wv": "self_attn.v_proj",
             "wo": "self_attn.o_proj", "w1": "mlp.gate_proj", "w2": "mlp.down_proj",
             "w3": "mlp.up_proj"}
_LLAMA_ALIASES = {"q": "wq", "k": "wk", "v": "wv", "o": "wo", "gate": "w1", "down": "w2",
                  "up": "w3", "q_proj": "wq", "k_proj": "wk", "v_proj": "wv", "o_proj": "wo",
                  "gate_proj": "w1", "down_proj": "w2", "up_proj": "w3",
                  **{k: k for k in _LLAMA_HF}}
_GPT_ALIASES = {"c_attn": "c_attn", "c_proj": "c_proj", "c_fc": "c_fc", "qkv": "c_attn",
                "attn.c_proj": "attn.c_proj", "mlp.c_proj": "mlp.c_proj", "o": "attn.c_proj",
                "up": "c_fc", "down": "mlp.c_proj"}
DEFAULT_TARGETS = {"gpt": ("c_attn", "c_proj", "c_fc"), "llama": ("q", "k", "v", "o")}


@dataclass
class LoRAConfig:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple = field(default_factory=tuple)   # empty: DEFAULT_TARGETS of the architecture

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def check(self) -> None:
        if int(self.r) != self.r or self.r < 1:
            raise ScratchLLMError(f"lora_r must be a positive integer, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ScratchLLMError(f"lora_dropout must lie in [0, 1), got {self.dropout}")


class LoRALinear(Module):
    """A frozen Linear (``weight``, ``bias``: the same names, so the state dict keeps its keys)
    plus ``lora_A`` (Linear in->r) and ``lora_B`` (Linear r->out), no biases."""

    def __init__(self, base: Linear, r: int, alpha: float, dropout: float = 0.0, generator=None):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.weight.requires_grad = False
        if self.bias is not None:
            self.bias.requires_grad = False
        dtype = base.weight.data.dtype
        self.lora_A = Linear(self.in_features, r, bias=False, dtype=dtype,
                             generator=generator or default_generator())
        self.lora_B = Linear(r, self.out_features, bias=False, dtype=dtype)
        self.lora_B.weight.data[...] = 0
        self.r, self.alpha, self.dropout = r, alpha, dropout
        self.scaling = alpha / r
        self.merged = False
        self._saved = None

    def delta_weight(self):
        """(alpha / r) · B A, shaped like ``weight`` (out, in)."""
        return (self.lora_B.weight.data @ self.lora_A.weight.data) * self.weight.data.dtype.type(self.scaling)

    def merge(self) -> None:
        """W <- W + (alpha/r) B A. The old W is kept, so ``unmerge`` restores it bit for bit
        (W + d - d is not always W in floating point; the base must stay exactly as loaded)."""
        if not self.merged:
            self._saved = self.weight.data.copy()
            self.weight.data += self.delta_weight()
            self.merged = True

    def unmerge(self) -> None:
        if self.merged:
            self.weight.data[...] = self._saved
            self._saved = None
            self.merged = False

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)                          # (..., out)
        if self.merged:
            return y
        h = F.dropout(x, self.dropout, True) if self.dropout and self.training else x
        return y + self.lora_B(self.lora_A(h)) * self.scaling            # (..., r) -> (..., out)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"alpha={self.alpha}, dropout={self.dropout}, merged={self.merged}")


# ------------------------------------------------------------------ which modules
def arch_of(model) -> str:
    t = getattr(model.config, "model_type", None) or type(model).__name__.lower()
    if t in ("gpt", "gpt2"):
        return "gpt"
    if t == "llama":
        return "llama"
    raise ScratchLLMError(f"LoRA: unsupported model type {t!r} (gpt or llama)")


def _suffixes(arch: str, targets) -> list:
    aliases = _GPT_ALIASES if arch == "gpt" else _LLAMA_ALIASES
    out = []
    for t in targets or DEFAULT_TARGETS[arch]:
        t = t.strip()
        if t not in aliases:
            raise ScratchLLMError(f"LoRA: unknown target {t!r} for a {arch} model; use some of "
                                  f"{', '.join(sorted(aliases))}")
        out.append(aliases[t])
    return out


def target_modules(model, targets=()) -> list:
    """Names of the Linear modules that ``targets`` select, in model order."""
    suffixes = _suffixes(arch_of(model), targets)
    names = [n for n, m in model.named_modules() if isinstance(m, (Linear, LoRALinear))
             and any(n == s or n.endswith("." + s) for s in suffixes)]
    if not names:
        raise ScratchLLMError(f"LoRA: targets {list(targets)} match no Linear layer of the model")
    return names


def _get(model, name):
    m = model
    for part in name.split("."):
        m = getattr(m, part)
    return m


def _set(model, name, module):
    parent, _, last = name.rpartition(".")
    setattr(_get(model, parent) if parent else model, last, module)


def apply_lora(model, cfg: LoRAConfig, generator=None, names=None) -> list:
    """Freeze every parameter and wrap the target Linears (or the modules ``names``) in
    LoRALinear; returns their names."""
    cfg.check()
    names = list(names) if names is not None else target_modules(model, cfg.targets)
    for p in model.parameters():
        p.requires_grad = False
    g = generator or default_generator()
    for name in names:
        m = _get(model, name)
        if not isinstance(m, LoRALinear):
            _set(model, name, LoRALinear(m, int(cfg.r), float(cfg.alpha), float(cfg.dropout), g))
    for p in lora_parameters(model):
        p.requires_grad = True
    model.lora_config = cfg
    return names


def lora_modules(model) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_parameters(model) -> list:
    return [p for n, m in lora_modules(model).items() for p in (m.lora_A.weight, m.lora_B.weight)]


def merge_lora(model) -> None:
    for m in lora_modules(model).values():
        m.merge()


def unmerge_lora(model) -> None:
    for m in lora_modules(model).values():
        m.unmerge()


@contextlib.contextmanager
def merged(model):
    """Adapters folded into the weights inside the block (for generate(), which reads raw weights)."""
    was = {n: m.merged for n, m in lora_modules(model).items()}
    merge_lora(model)
    try:
        yield model
    finally:
        for n, m in lora_modules(model).items():
            if not was[n]:
                m.unmerge()


def remove_lora(model) -> None:
    """Merge the adapters for good and put plain Linears back (for saving a whole model)."""
    for name, m in lora_modules(model).items():
        m.merge()
        lin = Linear(m.in_features, m.out_features, bias=m.bias is not None)
        lin.weight, lin.bias = m.weight, m.bias
        _set(model, name, lin)
    for p in model.parameters():
        p.requires_grad = True


def save_merged(model, folder) -> None:
    """Save the whole model with the adapters merged in (``sl.load_model`` reads it as a plain
    model); ``model`` itself is left as it was."""
    from ..autograd.random import Generator
    from ..models import build_model
    with merged(model):
        state = {k: v.copy() for k, v in model.state_dict().items()
                 if ".lora_A." not in k and ".lora_B." not in k}
    plain = build_model(model.config, generator=Generator(0))   # no draw from the global generator
    plain.load_state_dict(state)
    plain.save_pretrained(os.fspath(folder), format="scratchllm")


# ------------------------------------------------------------------ PEFT names
def _hf_module_name(arch: str, ours: str) -> str:
    if arch == "gpt":
        return ours                                   # transformer.h.0.attn.c_attn
    _, i, rest = ours.split(".", 2)                   # layers.0.attention.wq
    return f"model.layers.{i}.{_LLAMA_HF[rest.split('.')[-1]]}"


def _ours_from_hf(arch: str, hf: str) -> str:
    if arch == "gpt":
        return hf
    back = {v: k for k, v in _LLAMA_HF.items()}
    parts = hf.split(".")                             # model.layers.0.self_attn.q_proj
    if len(parts) != 5 or parts[:2] != ["model", "layers"] or ".".join(parts[3:]) not in back:
        raise ScratchLLMError(f"adapter: cannot place module {hf!r} on a Llama model")
    w = back[".".join(parts[3:])]
    return f"layers.{parts[2]}.{'attention' if w in ('wq', 'wk', 'wv', 'wo') else 'feed_forward'}.{w}"


def _qk_heads(model, ours: str):
    """Heads of the RoPE row permutation for wq/wk (None for other modules)."""
    c = model.config
    if ours.endswith("attention.wq"):
        return c.n_heads
    if ours.endswith("attention.wk"):
        return c.n_kv_heads
    return None


def adapter_state(model) -> dict:
    """PEFT-named arrays of the adapters (float32)."""
    from ..models.weights import meta_to_hf_qk
    arch, out = arch_of(model), {}
    for name, m in lora_modules(model).items():
        key = "base_model.model." + _hf_module_name(arch, name)
        B = m.lora_B.weight.data
        heads = _qk_heads(model, name) if arch == "llama" else None
        if heads:
            B = meta_to_hf_qk(B, heads)
        out[key + ".lora_A.weight"] = xp.ascontiguousarray(m.lora_A.weight.data, dtype=xp.float32)
        out[key + ".lora_B.weight"] = xp.ascontiguousarray(B, dtype=xp.float32)
    return out


def adapter_config(model, cfg: LoRAConfig, base_model: str | None = None) -> dict:
    arch = arch_of(model)
    mods = sorted({_hf_module_name(arch, n).rsplit(".", 1)[-1] for n in lora_modules(model)})
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": int(cfg.r),
            "lora_alpha": cfg.alpha, "lora_dropout": cfg.dropout, "target_modules": mods,
            "fan_in_fan_out": arch == "gpt", "bias": "none", "base_model_name_or_path": base_model,
            "inference_mode": True, "modules_to_save": None, "init_lora_weights": True,
            "use_rslora": False, "use_dora": False, "layers_to_transform": None,
            "rank_pattern": {}, "alpha_pattern": {}, "revision": None}


def save_adapter(model, folder, base_model: str | None = None) -> None:
    """Write adapter_model.safetensors + adapter_config.json (PEFT layout), atomically."""
    from ..atomic import atomic_write
    from ..io.safetensors_file import write_safetensors
    cfg = getattr(model, "lora_config", None)
    if cfg is None or not lora_modules(model):
        raise ScratchLLMError("save_adapter: the model has no LoRA adapters")
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, ADAPTER_WEIGHTS), adapter_state(model), metadata={"format": "pt"})
    with atomic_write(os.path.join(folder, ADAPTER_CONFIG), "w") as f:
        json.dump(adapter_config(model, cfg, base_model), f, indent=2)


def read_adapter_config(folder) -> LoRAConfig:
    from ..jsonio import read_json
    path = os.path.join(os.fspath(folder), ADAPTER_CONFIG)
    if not os.path.isfile(path):
        raise ScratchLLMError(f"adapter config not found: {path}")
    d = read_json(path, "adapter config", expect=None)   # depth-limited; errors name the file
    if not isinstance(d, dict) or d.get("peft_type", "LORA") != "LORA":
        raise ScratchLLMError(f"{path}: not a LoRA adapter config")
    for key in ("use_dora", "use_rslora"):
        if d.get(key):
            raise ScratchLLMError(f"{path}: {key} adapters are not supported")
    if d.get("rank_pattern") or d.get("alpha_pattern"):
        raise ScratchLLMError(f"{path}: per-module rank_pattern/alpha_pattern are not supported")
    try:
        return LoRAConfig(r=int(d["r"]), alpha=float(d["lora_alpha"]),
                          dropout=float(d.get("lora_dropout") or 0.0),
                          targets=tuple(d.get("target_modules") or ()))
    except (KeyError, TypeError, ValueError) as e:
        raise ScratchLLMError(f"{path}: bad or missing field {e}") from None


def load_adapter(model, folder) -> list:
    """Put a PEFT LoRA adapter (made by peft or by ``save_adapter``) onto ``model``."""
    from ..io.safetensors_file import read_safetensors
    from ..models.weights import hf_to_meta_qk
    cfg = read_adapter_config(folder)
    arch = arch_of(model)
    path = os.path.join(os.fspath(folder), ADAPTER_WEIGHTS)
    tensors, _ = read_safetensors(path)
    by_module: dict = {}
    for key, arr in tensors.items():
        k = key[len("base_model.model."):] if key.startswith("base_model.model.") else key
        for part in (".lora_A.weight", ".lora_B.weight", ".lora_A.default.weight",
                     ".lora_B.default.weight"):
            if k.endswith(part):
                by_module.setdefault(k[:-len(part)], {})[part.split(".")[1]] = arr
                break
        else:
            raise ScratchLLMError(f"{path}: unexpected tensor {key!r} (only lora_A/lora_B supported)")
    names = [_ours_from_hf(arch, hf) for hf in by_module]
    known = {n for n, m in model.named_modules() if isinstance(m, (Linear, LoRALinear))}
    for hf, ours in zip(by_module, names):
        if ours not in known:
            raise ScratchLLMError(f"{path}: module {hf!r} is not a Linear layer of the model")
    apply_lora(model, cfg, names=names)
    mods = lora_modules(model)
    for (hf, ab), ours in zip(by_module.items(), names):
        m = mods.get(ours)
        if m is None or set(ab) != {"lora_A", "lora_B"}:
            raise ScratchLLMError(f"{path}: module {hf!r} does not fit the model")
        A, B = ab["lora_A"], ab["lora_B"]
        heads = _qk_heads(model, ours) if arch == "llama" else None
        if A.shape != m.lora_A.weight.shape or B.shape != m.lora_B.weight.shape:
            raise ScratchLLMError(f"{path}: {hf} lora_A {A.shape} / lora_B {B.shape} do not fit "
                                  f"{tuple(m.lora_A.weight.shape)} / {tuple(m.lora_B.weight.shape)}")
        m.lora_A.weight.data[...] = A
        m.lora_B.weight.data[...] = hf_to_meta_qk(B, heads) if heads else B
    return names
