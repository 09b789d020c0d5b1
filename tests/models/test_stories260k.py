"""A real pretrained llama2.c model (Karpathy's TinyStories "stories260K", tests/data/stories260K).

llama2.c's own run.c, greedy, prompt "Once upon a time", prints "Once upon a time, there was a
little girl named Lily. She loved to play outside in the park. One day, she saw a big, red
ball. ...". We check (1) our reader + model's greedy ids against an independent NumPy forward
written here from llama2.c's format and run.c's arithmetic, and (2) the ``scratchllm generate``
command's text against run.c's published output.
"""
import argparse
from pathlib import Path

import numpy as np

import scratchllm as sl
from scratchllm.models.cli import add_generate_command
from scratchllm.tokenizers import load_tokenizer

DIR = Path(__file__).resolve().parents[1] / "data" / "stories260K"
MODEL, TOKENIZER = DIR / "stories260K.bin", DIR / "tok512.bin"
PROMPT = "Once upon a time"
PUBLISHED = ("there was a little girl named Lily. She loved to play outside in the park. "
             "One day, she saw a big, red ball.")
BOS = 1


def read_bin(path):
    """llama2.c's legacy format, read straight from the bytes: 7 int32, then float32 weights."""
    raw = np.fromfile(path, dtype="<i4", count=7)
    dim, hidden, L, H, KV, vocab, seq = (int(v) for v in raw)
    w = np.fromfile(path, dtype="<f4", offset=28)
    hd = dim // H
    shapes = [("emb", (vocab, dim)), ("rms_att", (L, dim)), ("wq", (L, H * hd, dim)), ("wk", (L, KV * hd, dim)),
              ("wv", (L, KV * hd, dim)), ("wo", (L, dim, H * hd)), ("rms_ffn", (L, dim)),
              ("w1", (L, hidden, dim)), ("w2", (L, dim, hidden)), ("w3", (L, hidden, dim)), ("rms_final", (dim,)),
              ("freq_real", (seq, hd // 2)), ("freq_imag", (seq, hd // 2))]
    out, pos = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        out[name] = w[pos:pos + n].reshape(shape).astype(np.float64)
        pos += n
    out["wcls"] = out["emb"] if vocab > 0 else w[pos:].reshape(-vocab, dim).astype(np.float64)
    return dict(dim=dim, L=L, H=H, KV=KV, hd=hd), out


def reference_logits(cfg, w, tokens):
    """run.c's forward for every position at once (float64): RMSNorm, interleaved RoPE, GQA, SwiGLU."""
    H, KV, hd, T = cfg["H"], cfg["KV"], cfg["hd"], len(tokens)

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * g

    def rope(v, heads):                                   # (T, heads*hd): pairs (2i, 2i+1) of each head
        v = v.reshape(T, heads, hd // 2, 2)
        freq = 1.0 / 10000.0 ** (np.arange(0, hd, 2) / hd)
        ang = np.arange(T)[:, None] * freq[None, :]       # (T, hd/2)
        c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
        a, b = v[..., 0], v[..., 1]
        return np.stack([a * c - b * s, a * s + b * c], -1).reshape(T, heads, hd)

    x = w["emb"][tokens]                                  # (T, dim)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for layer in range(cfg["L"]):
        h = rms(x, w["rms_att"][layer])
        q, k = rope(h @ w["wq"][layer].T, H), rope(h @ w["wk"][layer].T, KV)
        v = (h @ w["wv"][layer].T).reshape(T, KV, hd)
        heads = []
        for i in range(H):
            j = i // (H // KV)
            att = q[:, i] @ k[:, j].T / np.sqrt(hd) + mask
            att = np.exp(att - att.max(-1, keepdims=True))
            heads.append((att / att.sum(-1, keepdims=True)) @ v[:, j])
        x = x + np.concatenate(heads, -1) @ w["wo"][layer].T
        h = rms(x, w["rms_ffn"][layer])
        a = h @ w["w1"][layer].T
        x = x + ((a / (1 + np.exp(-a))) * (h @ w["w3"][layer].T)) @ w["w2"][layer].T
    return rms(x, w["rms_final"]) @ w["wcls"].T


def test_greedy_ids_equal_independent_forward():
    tok = load_tokenizer(str(TOKENIZER))
    prompt = [BOS] + list(tok.encode(PROMPT))
    cfg, w = read_bin(MODEL)
    ref = list(prompt)
    for _ in range(40):
        logits = reference_logits(cfg, w, ref)[-1]
        top2 = np.sort(logits)[-2:]
        assert top2[1] - top2[0] > 1e-3                    # no near-tie: float32 vs float64 cannot flip it
        ref.append(int(logits.argmax()))
    model = sl.load_model(str(MODEL))
    ours = model.generate(np.array([prompt]), max_new_tokens=40, temperature=0.0)[0].tolist()
    assert ours == ref
    np.testing.assert_allclose(model(np.array([ref])).numpy()[0], reference_logits(cfg, w, ref),
                               rtol=1e-4, atol=1e-4)
    assert PUBLISHED in tok.decode(ref[len(prompt):])


def test_generate_cli_prints_run_c_greedy_story(capsys):
    parser = argparse.ArgumentParser()
    add_generate_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["generate", "--model", str(MODEL), "--tokenizer", str(TOKENIZER),
                              "--prompt", PROMPT, "--max-new-tokens", "40", "--temperature", "0"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(PROMPT)
    after = out[len(PROMPT):]
    assert after.lstrip(" ,").startswith(PUBLISHED)        # ", there was ..." (run.c's published text)
