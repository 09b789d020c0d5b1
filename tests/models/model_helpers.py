"""Shared helpers: small random HF models (weights scaled up), Meta / llama2.c writers."""
import json
import struct

import numpy as np
import torch
import transformers

from scratchllm.models.weights import meta_to_hf_qk

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)  # tiny models: threads only contend (and other test workers share the cores)


def scale_up(model, seed: int, std: float = 0.2):
    """Re-draw every weight so logits are far from uniform (HF's own init gives ~uniform)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
    return model.eval()


def hf_gpt2(seed=0, vocab=97, n_layer=2, n_head=4, n_embd=32, n_positions=96):
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                                  n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  bos_token_id=0, eos_token_id=0)
    torch.manual_seed(seed)
    return scale_up(transformers.GPT2LMHeadModel(cfg), seed)


def hf_llama(seed=0, vocab=101, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, intermediate=192, theta=500000.0,
             tie=False, max_pos=128, rope_scaling=None):
    rope = {"rope_theta": theta, "rope_type": "default"}
    if rope_scaling:
        rope = {"rope_theta": theta, **rope_scaling}
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=dim, intermediate_size=intermediate,
                                   num_hidden_layers=n_layers, num_attention_heads=n_heads,
                                   num_key_value_heads=n_kv_heads, max_position_embeddings=max_pos,
                                   rms_norm_eps=1e-5, rope_parameters=rope, tie_word_embeddings=tie,
                                   bos_token_id=0, eos_token_id=0, pad_token_id=None)
    torch.manual_seed(seed)
    return scale_up(transformers.LlamaForCausalLM(cfg), seed, std=0.15)


def hf_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(ids)).logits.float().numpy()


def hf_greedy(model, ids, n: int) -> np.ndarray:
    with torch.no_grad():
        out = model.generate(torch.as_tensor(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
    return out.numpy()


def meta_state_from_hf(hf_model) -> dict:
    """HF LlamaForCausalLM -> Meta-named torch tensors (q/k rows back to the interleaved layout)."""
    c = hf_model.config
    out = {}
    for k, v in hf_model.state_dict().items():
        v = v.detach().clone()
        k = k.replace("model.", "", 1)
        k = (k.replace("embed_tokens", "tok_embeddings").replace("lm_head", "output")
             .replace("self_attn.q_proj", "attention.wq").replace("self_attn.k_proj", "attention.wk")
             .replace("self_attn.v_proj", "attention.wv").replace("self_attn.o_proj", "attention.wo")
             .replace("mlp.gate_proj", "feed_forward.w1").replace("mlp.down_proj", "feed_forward.w2")
             .replace("mlp.up_proj", "feed_forward.w3").replace("input_layernorm", "attention_norm")
             .replace("post_attention_layernorm", "ffn_norm"))
        if k.endswith("attention.wq.weight"):
            v = torch.from_numpy(_hf_to_meta(v.numpy(), c.num_attention_heads))
        elif k.endswith("attention.wk.weight"):
            v = torch.from_numpy(_hf_to_meta(v.numpy(), c.num_key_value_heads))
        out[k] = v
    if c.tie_word_embeddings:
        out.pop("output.weight", None)
    return out


def _hf_to_meta(w, heads):
    n, d = w.shape
    return np.ascontiguousarray(w.reshape(heads, 2, n // heads // 2, d).transpose(0, 2, 1, 3).reshape(n, d))


def hf_state_from_meta(meta: dict, config) -> dict:
    """Meta-named arrays -> HF LlamaForCausalLM names (for loading into the torch reference)."""
    out = {}
    for k, v in meta.items():
        v = np.asarray(v, dtype=np.float32)
        if k.endswith("attention.wq.weight"):
            v = meta_to_hf_qk(v, config.num_attention_heads)
        elif k.endswith("attention.wk.weight"):
            v = meta_to_hf_qk(v, config.num_key_value_heads)
        name = ("model." + k).replace("tok_embeddings", "embed_tokens").replace("model.output", "lm_head")
        for a, b in (("attention.wq", "self_attn.q_proj"), ("attention.wk", "self_attn.k_proj"),
                     ("attention.wv", "self_attn.v_proj"), ("attention.wo", "self_attn.o_proj"),
                     ("feed_forward.w1", "mlp.gate_proj"), ("feed_forward.w2", "mlp.down_proj"),
                     ("feed_forward.w3", "mlp.up_proj"), ("attention_norm", "input_layernorm"),
                     ("ffn_norm", "post_attention_layernorm")):
            name = name.replace(a, b)
        out[name] = torch.from_numpy(np.ascontiguousarray(v))
    return out


def split_meta_shards(state: dict, n: int) -> list:
    """Cut a Meta state dict into ``n`` model-parallel shards on Meta's axes."""
    dim0 = ("wq.weight", "wk.weight", "wv.weight", "w1.weight", "w3.weight", "output.weight")
    dim1 = ("wo.weight", "w2.weight", "tok_embeddings.weight")
    shards = [{} for _ in range(n)]
    for k, v in state.items():
        if k.endswith(dim0):
            parts = torch.chunk(v, n, dim=0)
        elif k.endswith(dim1):
            parts = torch.chunk(v, n, dim=1)
        else:
            parts = [v] * n
        for s, p in zip(shards, parts):
            s[k] = p.clone()
    return shards


def write_meta(folder, state: dict, params: dict, shards: int = 1, dtype=torch.float32):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.json").write_text(json.dumps(params))
    for i, s in enumerate(split_meta_shards(state, shards)):
        torch.save({k: v.to(dtype) for k, v in s.items()}, folder / f"consolidated.{i:02d}.pth")


def write_llama2c(path, state: dict, cfg: dict, version: int = 0, group: int = 32) -> dict:
    """Write llama2.c's format as its export.py does; returns the weights as stored (dequantized for v2)."""
    L = cfg["n_layers"]
    shared = "output.weight" not in state
    f32 = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
    per = lambda name: [f32[f"layers.{i}.{name}"] for i in range(L)]  # noqa: E731
    ints = (cfg["dim"], cfg["hidden_dim"], L, cfg["n_heads"], cfg["n_kv_heads"], cfg["vocab_size"], cfg["seq_len"])
    stored = dict(f32)
    with open(path, "wb") as f:
        if version == 0:
            f.write(struct.pack("7i", *ints[:5], ints[5] if shared else -ints[5], ints[6]))
            ws = [f32["tok_embeddings.weight"], *per("attention_norm.weight"), *per("attention.wq.weight"),
                  *per("attention.wk.weight"), *per("attention.wv.weight"), *per("attention.wo.weight"),
                  *per("ffn_norm.weight"), *per("feed_forward.w1.weight"), *per("feed_forward.w2.weight"),
                  *per("feed_forward.w3.weight"), f32["norm.weight"]]
            hd = cfg["dim"] // cfg["n_heads"]
            ws += [np.full((cfg["seq_len"], hd // 2), 7.0, np.float32)] * 2          # RoPE tables (skipped)
            if not shared:
                ws.append(f32["output.weight"])
            for w in ws:
                f.write(w.astype("<f4").tobytes())
            return stored
        f.write(struct.pack("I", 0x616B3432) + struct.pack("i", version) + struct.pack("7i", *ints))
        f.write(struct.pack("B", int(shared)))
        if version == 2:
            f.write(struct.pack("i", group))
        f.write(b"\0" * (256 - f.tell()))
        for w in per("attention_norm.weight") + per("ffn_norm.weight") + [f32["norm.weight"]]:
            f.write(w.astype("<f4").tobytes())
        names = ["tok_embeddings.weight"] + [f"layers.{i}.{n}" for n in
                                             ("attention.wq.weight", "attention.wk.weight", "attention.wv.weight",
                                              "attention.wo.weight", "feed_forward.w1.weight",
                                              "feed_forward.w2.weight", "feed_forward.w3.weight")
                                             for i in range(L)]
        if not shared:
            names.append("output.weight")
        for n in names:
            w = f32[n]
            if version == 1:
                f.write(w.astype("<f4").tobytes())
                continue
            g = w.reshape(-1, group)
            scale = (np.abs(g).max(axis=1) / 127.0).astype(np.float32)
            q = np.round(g / scale[:, None]).astype(np.int8)
            f.write(q.tobytes())
            f.write(scale.astype("<f4").tobytes())
            stored[n] = (q.astype(np.float32) * scale[:, None]).reshape(w.shape)
    return stored
