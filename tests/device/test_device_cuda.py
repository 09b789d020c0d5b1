"""The GPU side: ops, fused layers, GPT and Llama on "cuda" against the CPU and against torch CUDA.

Collected only with SCRATCHLLM_TEST_CUDA=1 on a machine with CuPy and a GPU (conftest.py);
scripts/gpu_check.sh runs it. Oracles: scratchllm on the CPU (itself tested against torch
elsewhere) for everything, and torch on the same GPU (float32, 1e-4) where torch sees CUDA.
"""
import math

import cupy as cp
import numpy as np
import pytest

import scratchllm as sl
from scratchllm.errors import ScratchLLMError
from scratchllm.kernels import cuda_kernels as ck
from scratchllm.models import GPT, GPTConfig, Llama, LlamaConfig
from scratchllm.nn import functional as F

try:
    import torch
    TORCH_CUDA = torch.cuda.is_available()
except ImportError:                                   # torch is an oracle only; the CPU one always runs
    torch, TORCH_CUDA = None, False
ORACLES = ["cpu"] + (["torch-cuda"] if TORCH_CUDA else [])


def host(x):
    if isinstance(x, sl.Tensor):
        return x.numpy()
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x.get() if hasattr(x, "get") else np.asarray(x)


def close(a, b, rtol=1e-4, atol=1e-5, what=""):
    np.testing.assert_allclose(host(a), host(b), rtol=rtol, atol=atol, err_msg=what)


def both(fn, *arrays, grad=True, seed=1):
    """``fn(*tensors)`` on "cpu" and on "cuda" from the same arrays, backward with the same upstream
    gradient -> [(out, grads) on cpu, (out, grads) on cuda]."""
    res = []
    for dev in ("cpu", "cuda"):
        ts = [sl.Tensor(a, requires_grad=grad and a.dtype.kind == "f", device=dev) for a in arrays]
        out = fn(*ts)
        assert out.device == ("cpu" if dev == "cpu" else "cuda:0"), f"{dev}: output on {out.device}"
        if grad:
            g = np.asarray(np.random.default_rng(seed).standard_normal(out.shape), dtype=out.dtype)
            out.backward(sl.Tensor(g, device=dev))
        res.append((out, [t.grad for t in ts if t.requires_grad]))
    return res


def check_both(fn, *arrays, rtol=1e-4, atol=1e-5, grad=True):
    (oc, gc), (og, gg) = both(fn, *arrays, grad=grad)
    close(og, oc, rtol, atol, "forward")
    for i, (a, b) in enumerate(zip(gg, gc)):
        assert a.device == "cuda:0"
        close(a, b, rtol, atol, f"grad {i}")


R = np.random.default_rng(0)
A34, B34, B4 = (R.standard_normal(s).astype(np.float32) for s in ((3, 4), (3, 4), (4,)))
A234, B45, B245 = (R.standard_normal(s).astype(np.float32) for s in ((2, 3, 4), (4, 5), (2, 4, 5)))

ELEMENTARY = {
    "add_broadcast": (lambda a, b: a + b, (A34, B4)),
    "sub_mul_div": (lambda a, b: (a - b) * a / (b * b + 1), (A34, B34)),
    "pow": (lambda a: (a * a + 1) ** 1.5, (A34,)),
    "rpow_rsub_rdiv": (lambda a: 2.0 ** a + (1 - a) + 1 / (a * a + 1), (A34,)),
    "exp_log_sqrt": (lambda a: (a.exp() + (a * a + 1).log() + (a * a + 1).sqrt()), (A34,)),
    "tanh_sigmoid_relu": (lambda a: a.tanh() + a.sigmoid() * a.relu(), (A34,)),
    "gelu_exact_silu_abs": (lambda a: a.gelu() + a.silu() + a.abs(), (A34,)),
    "clamp_max_min": (lambda a, b: a.clamp(-0.5, 0.5) + a.maximum(b) - a.minimum(b), (A34, B34)),
    "clamp_tensors": (lambda a, b: a.clamp(b, b + 1), (A34, B34)),
    "sum_mean": (lambda a: a.sum(1) + a.mean(1) + a.sum() + a.mean(), (A34,)),
    "var_std": (lambda a: a.var(0) + a.std(0), (A34,)),
    "max_dim_amax": (lambda a: a.max(1)[0] + a.amax(), (A34,)),
    "min_all": (lambda a: a.min() * a, (A34,)),
    "softmax_log_softmax": (lambda a: a.softmax(-1) * a.log_softmax(0), (A34,)),
    "matmul_folded": (lambda a, b: a @ b, (A234, B45)),
    "matmul_batched": (lambda a, b: a @ b, (A234, B245)),
    "einsum": (lambda a, b: sl.einsum("bik,bkj->bij", a, b), (A234, B245)),
    "index_repeated": (lambda a: a[sl.tensor([0, 2, 0], device=a.device)] * 2, (A34,)),
    "slice_view": (lambda a: a[1:, ::2] * 3, (A34,)),
    "transpose_reshape": (lambda a: a.transpose(0, 2).reshape(-1, 2) @ sl.ones(2, 2, device=a.device), (A234,)),
    "permute_expand": (lambda a: a.permute(2, 0, 1).unsqueeze(0).expand(2, 4, 2, 3).sum(0), (A234,)),
    "cat_stack_split": (lambda a, b: sl.cat([a, b], 1).split(3, dim=1)[1] + sl.stack([a, b], 0).sum(0)[:, :1],
                        (A34, B34)),
    "where_masked_fill": (lambda a, b: sl.where(a > 0, a, b) + a.masked_fill(b > 0, 0.5), (A34, B34)),
    "triu_tril": (lambda a: a.triu(1) - a.tril(), (A34,)),
    "contiguous_cast": (lambda a: a.T.contiguous().double().float() * 2, (A34,)),
}


@pytest.mark.parametrize("name", sorted(ELEMENTARY))
def test_elementary_ops_on_the_gpu_equal_the_cpu(name):
    fn, arrays = ELEMENTARY[name]
    check_both(fn, *arrays)


def test_tensor_device_api():
    x = sl.Tensor([[1.0, 2.0], [3.0, 4.0]], device="cuda", requires_grad=True)
    assert x.device == "cuda:0" and isinstance(x.data, cp.ndarray)
    assert isinstance(x.numpy(), np.ndarray) and x[1, 1].item() == 4.0 and x.tolist() == [[1, 2], [3, 4]]
    y = x.cpu()
    assert y.device == "cpu" and x.to("cuda") is x and "device='cuda:0'" in repr(x)
    (y * y).sum().backward()                               # the move is differentiable
    assert x.grad.device == "cuda:0"
    close(x.grad, 2 * x.numpy())
    with pytest.raises(ScratchLLMError, match="same device, got cuda:0 and cpu"):
        x + y
    assert sl.zeros(2, device="cuda").device == sl.randn(3, device="cuda").device == "cuda:0"
    m = sl.nn.Linear(3, 2).to("cuda")
    assert m.device == "cuda:0" and all(p.device == "cuda:0" for p in m.parameters())


# ---------------------------------------------------------------- fused functional ops
def _t(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


FUSED = {
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (64,), w, b), (_t((4, 5, 64)), _t(64, 1), _t(64, 2))),
    "layer_norm_plain": (lambda x: F.layer_norm(x, (96,)), (_t((7, 96), 3, 3.0),)),
    "rms_norm": (lambda x, w: F.rms_norm(x, (64,), w, 1e-5), (_t((4, 5, 64)), _t(64, 1))),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), (_t((3, 257), 0, 3.0),)),
    "linear": (lambda x, w, b: F.linear(x, w, b), (_t((2, 5, 16)), _t((8, 16), 1), _t(8, 2))),
    "embedding": (lambda w: F.embedding(np.array([[1, 3, 3], [0, 1, 1]]), w), (_t((5, 4)),)),
    "sdpa_causal_gqa": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
                        (_t((2, 4, 9, 8)), _t((2, 2, 9, 8), 1), _t((2, 2, 9, 8), 2))),
    "sdpa_bool_mask": (lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=sl.Tensor(np.tril(np.ones((6, 6), bool)), device=q.device)),
        (_t((2, 3, 6, 8)), _t((2, 3, 6, 8), 1), _t((2, 3, 6, 8), 2))),
    "qkv_attention": (lambda x: F.qkv_attention(x, 4), (_t((2, 11, 48)),)),
    "qkv_attention_long": (lambda x: F.qkv_attention(x, 2), (_t((1, 200, 24)),)),
    "rope": (lambda x: F.apply_rope(x, *[sl.Tensor(a, device=x.device).data for a in F.rope_cache(8, 16)],
                                    offset=3), (_t((2, 3, 5, 8)),)),
}


@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_ops_on_the_gpu_equal_the_cpu(name):
    fn, arrays = FUSED[name]
    check_both(fn, *arrays)


@pytest.mark.parametrize("reduction,smoothing", [("mean", 0.0), ("sum", 0.0), ("none", 0.0), ("mean", 0.1)])
def test_cross_entropy_on_the_gpu(reduction, smoothing):
    targets = np.array([[3, 0, -100, 7], [1, 1, 9, 2]])
    check_both(lambda x: F.cross_entropy(x, targets, reduction=reduction, label_smoothing=smoothing),
               _t((2, 4, 10), 0, 2.0))


@pytest.mark.parametrize("case", ["huge_logits", "all_ignored", "constant_row"])
def test_the_pinned_edge_cases_on_the_gpu(case):
    """tests/properties' pinned cases (there against torch): on the GPU equal to the CPU."""
    if case == "constant_row":
        b = np.array([0.5, -1.0, 2.0], np.float32)
        check_both(lambda t: F.layer_norm(t, 3, None, sl.Tensor(b, device=t.device)),
                   np.full((2, 3), 128.05922, np.float32), rtol=1e-6, atol=1e-6)
        return
    x, target = ((np.array([[1e30, 1e30], [4096, 4096]], np.float32), np.array([0, 1]))
                 if case == "huge_logits" else (np.ones((3, 4), np.float32), np.full(3, -1)))
    for smoothing in (0.0, 0.1):
        kw = dict(ignore_index=-1, label_smoothing=smoothing, reduction="none" if case == "huge_logits" else "mean")
        with np.errstate(all="ignore"):
            (oc, gc), (og, gg) = both(lambda t: F.cross_entropy(t, target, **kw), x)
        np.testing.assert_allclose(host(og), host(oc), rtol=1e-6, atol=1e-6)   # nan == nan (all ignored)
        np.testing.assert_allclose(host(gg[0]), host(gc[0]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("oracle", ORACLES)
def test_fused_ops_against_torch_cuda(oracle):
    """Layer norm, GELU, softmax, cross-entropy, attention on the GPU against torch on the same GPU
    (or the CPU where torch has no CUDA)."""
    x, w, b = _t((6, 64), 0, 2.0), _t(64, 1), _t(64, 2)
    tgt = np.array([1, 5, 0, 63, 2, 2])
    if oracle == "cpu":
        check_both(lambda x, w, b: F.cross_entropy(F.gelu(F.layer_norm(x, (64,), w, b), "tanh"), tgt), x, w, b)
        return
    import torch.nn.functional as TF
    tx, tw, tb = (torch.tensor(a, device="cuda", requires_grad=True) for a in (x, w, b))
    tl = TF.cross_entropy(TF.gelu(TF.layer_norm(tx, (64,), tw, tb), approximate="tanh"),
                          torch.tensor(tgt, device="cuda"))
    tl.backward()
    sx, sw, sb = (sl.Tensor(a, device="cuda", requires_grad=True) for a in (x, w, b))
    loss = F.cross_entropy(F.gelu(F.layer_norm(sx, (64,), sw, sb), "tanh"), tgt)
    loss.backward()
    close(loss, tl)
    for s, t in ((sx, tx), (sw, tw), (sb, tb)):
        close(s.grad, t.grad)
    q, k, v = (_t((2, 4, 33, 16), i) for i in range(3))
    tq, tk, tv = (torch.tensor(a, device="cuda", requires_grad=True) for a in (q, k, v))
    to = TF.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
    to.backward(torch.ones_like(to))
    sq, sk, sv = (sl.Tensor(a, device="cuda", requires_grad=True) for a in (q, k, v))
    so = F.scaled_dot_product_attention(sq, sk, sv, is_causal=True)
    so.backward(sl.ones(*so.shape, device="cuda"))
    close(so, to)
    for s, t in ((sq, tq), (sk, tk), (sv, tv)):
        close(s.grad, t.grad)


def test_float64_runs_the_cupy_references():
    check_both(lambda x, w: F.cross_entropy(F.layer_norm(x, (16,), w), np.array([1, 2, 3])) +
               F.rms_norm(x, (16,), w).sum() + F.gelu(x, "tanh").sum(),
               _t((3, 16)).astype(np.float64), _t(16, 1).astype(np.float64), rtol=1e-10, atol=1e-12)


def test_kernels_equal_their_references():
    x, w, b = cp.asarray(_t((5, 300), 0, 2.0)), cp.asarray(_t(300, 1)), cp.asarray(_t(300, 2))
    for center in (True, False):
        for got, want in zip(ck.norm_forward(x, w, b if center else None, 1e-5, center),
                             ck.norm_reference(x, w, b if center else None, 1e-5, center)):
            close(got, want)
    s = cp.asarray(_t((2, 7, 7)))
    ref = s.get() * 0.5
    ref = np.where(np.tril(np.ones((7, 7), bool)), ref, -np.inf)
    ref = np.exp(ref - ref.max(-1, keepdims=True))
    close(ck.softmax_rows_(s, causal=True, scale=0.5), ref / ref.sum(-1, keepdims=True))
    args = dict(t=3.0, lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, maximize=False)
    for decoupled in (True, False):
        p1, m1, v1 = cp.asarray(_t(1000)), cp.asarray(_t(1000, 1)), cp.asarray(_t(1000, 2) ** 2)
        p2, m2, v2 = p1.copy(), m1.copy(), v1.copy()
        g = cp.asarray(_t(1000, 3))
        ck.adam_update(p1, g, m1, v1, decoupled=decoupled, **args)
        ck.adam_reference(p2, g, m2, v2, decoupled=decoupled, **args)
        for a, b_ in ((p1, p2), (m1, m2), (v1, v2)):
            close(a, b_, 1e-5, 1e-7)


def test_dropout_on_the_gpu_is_seeded_and_scaled():
    x = sl.ones(200, 300, device="cuda", requires_grad=True)
    y1 = F.dropout(x, 0.25, True, sl.Generator(5))
    y2 = F.dropout(x, 0.25, True, sl.Generator(5))
    a = y1.numpy()
    assert np.array_equal(a, y2.numpy()) and abs((a == 0).mean() - 0.25) < 0.01
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.75)}
    y1.sum().backward()
    close(x.grad, a)


# ---------------------------------------------------------------- models
def _gpt(seed=0):
    sl.manual_seed(seed)
    return GPT(GPTConfig.from_preset("gpt-nano", vocab_size=71))


def _llama(seed=0):
    sl.manual_seed(seed)
    return Llama(LlamaConfig.from_preset("llama-nano"))


def _model_both(make, ids, targets):
    """(loss, logits, {name: grad}) of the same model on cpu and on cuda."""
    out = []
    for dev in ("cpu", "cuda"):
        m = make().to(dev)
        logits, loss = m(sl.Tensor(ids, device=dev), sl.Tensor(targets, device=dev))
        loss.backward()
        out.append((loss, logits, {n: p.grad for n, p in m.named_parameters()}))
    return out


@pytest.mark.parametrize("make,vocab", [(_gpt, 71), (_llama, 512)], ids=["gpt", "llama"])
def test_model_forward_backward_on_the_gpu(make, vocab):
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, vocab, (3, 40)), rng.integers(0, vocab, (3, 40))
    (lc, xc, gc), (lg, xg, gg) = _model_both(make, ids, targets)
    close(lg, lc)
    close(xg, xc, 1e-4, 1e-4)
    for name in gc:
        assert gg[name].device == "cuda:0", name
        close(gg[name], gc[name], 1e-3, 2e-5, name)           # sums over 120 rows: float32 order


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_model_against_hf_on_the_gpu(arch, tmp_path):
    """Our model on the GPU against HF transformers on the same GPU, same weights (where torch has CUDA;
    else against our CPU model, which tests/models checks against HF)."""
    model = (_gpt if arch == "gpt" else _llama)()
    vocab = model.vocab_size
    ids = np.random.default_rng(1).integers(0, vocab, (2, 30))
    ref = model(ids).numpy()
    try:
        import transformers
    except ImportError:
        transformers = None
    if TORCH_CUDA and transformers is not None:
        model.save_pretrained(tmp_path / "hf", format="hf")
        hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")      # float32
        hf = hf.to("cuda").eval()
        with torch.no_grad():
            ref = hf(torch.tensor(ids, device="cuda")).logits.cpu().numpy()
    model.to("cuda")
    close(model(sl.Tensor(ids, device="cuda")), ref, 1e-4, 1e-4)


@pytest.mark.parametrize("oracle", ORACLES)
def test_gpt_backward_against_torch_cuda(oracle):
    """Loss and every parameter's gradient of GPT on the GPU against nanoGPT's torch model on the
    same GPU (scratchllm.bench.peers.torch_gpt: the same names, no transposes), or our CPU model."""
    rng = np.random.default_rng(2)
    ids, targets = rng.integers(0, 71, (3, 40)), rng.integers(0, 71, (3, 40))
    model = _gpt()
    if oracle == "cpu":
        _, ref_loss = model(ids, targets)
        ref_loss.backward()
        ref = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
        ref_loss = ref_loss.item()
        model.zero_grad()
    else:
        from scratchllm.bench.peers.torch_gpt import build_torch_gpt, load_from_scratchllm
        torch.backends.cuda.matmul.allow_tf32 = False
        peer = build_torch_gpt(model.config)
        load_from_scratchllm(peer, model.state_dict())
        peer = peer.cuda()
        _, tl = peer(torch.tensor(ids, device="cuda"), torch.tensor(targets, device="cuda"))
        tl.backward()
        ref_loss = tl.item()
        ref = {n: p.grad.cpu().numpy() for n, p in peer.named_parameters()}
    model.to("cuda")
    _, loss = model(sl.Tensor(ids, device="cuda"), sl.Tensor(targets, device="cuda"))
    loss.backward()
    np.testing.assert_allclose(loss.item(), ref_loss, rtol=1e-5)
    for n, p in model.named_parameters():
        key = n if n in ref else n.replace("transformer.wte", "lm_head")
        close(p.grad, ref[key], 1e-3, 2e-5, n)


def _train(dev, steps=4, arch="gpt"):
    from scratchllm.nn.utils import clip_grad_norm_
    model = (_gpt if arch == "gpt" else _llama)().to(dev)
    opt = sl.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    rng = np.random.default_rng(7)
    losses = []
    for _ in range(steps):
        ids = rng.integers(0, model.vocab_size, (4, 32))
        x, y = sl.Tensor(ids[:, :-1], device=dev), sl.Tensor(ids[:, 1:], device=dev)
        _, loss = model(x, y)
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses, {k: to_np(v) for k, v in model.state_dict().items()}


def to_np(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_training_steps_on_the_gpu_equal_the_cpu(arch):
    lc, sc = _train("cpu", arch=arch)
    lg, sg = _train("cuda", arch=arch)
    np.testing.assert_allclose(lg, lc, rtol=1e-4)
    for k in sc:   # per tensor (Adam's lr * sign(g) of a gradient within rounding of 0 may differ element-wise)
        assert np.linalg.norm(sg[k] - sc[k]) <= 1e-3 * np.linalg.norm(sc[k]) + 1e-6, k


_SLEEP = r"""
extern "C" __global__ void gpu_sleep(unsigned long long ns) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do { __nanosleep(100000); asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now)); } while (now - start < ns);
}
"""
FAKE = cp.__version__.endswith("fake")       # tests/device/fakecupy (the CPU stand-in): no timing


def _step(model, opt, x, y):
    from scratchllm.nn.utils import clip_grad_norm_
    _, loss = model(x, y)
    loss.backward()
    clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    return loss


def test_a_training_step_makes_no_host_round_trip():
    """forward, backward, clipping and AdamW queue their GPU work without ever waiting for it:
    behind a 3 s sleep kernel, the host finishes the step long before the GPU is free (any
    device->host copy or sync would wait the 3 s). Also with cupyx.allow_synchronize(False)
    (CuPy raises on a device->host copy) where this CuPy still has it."""
    import time
    import warnings
    sl.manual_seed(0)                                        # one layer: ~300 kernels, well within the launch queue
    model = GPT(GPTConfig(vocab_size=71, block_size=64, n_layer=1, n_head=2, n_embd=32)).to("cuda")
    opt = sl.optim.AdamW(model.parameters(), lr=1e-3)
    ids = np.random.default_rng(0).integers(0, 71, (4, 33))
    x, y = sl.Tensor(ids[:, :-1], device="cuda"), sl.Tensor(ids[:, 1:], device="cuda")
    _step(model, opt, x, y)                                  # compiles the kernels, fills the memory pool
    if not FAKE:
        sleep = cp.RawKernel(_SLEEP, "gpu_sleep")
        cp.cuda.get_current_stream().synchronize()
        t0 = time.perf_counter()
        sleep((1,), (1,), (cp.uint64(3_000_000_000),))
        loss = _step(model, opt, x, y)
        host = time.perf_counter() - t0
        cp.cuda.get_current_stream().synchronize()
        total = time.perf_counter() - t0
        assert total >= 2.9, f"the sleep kernel did not sleep ({total:.2f} s)"
        assert host < 2.0, f"the step waited for the GPU: {host:.2f} s on the host (a host round trip)"
    import cupyx
    if hasattr(cupyx, "allow_synchronize"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with cupyx.allow_synchronize(False):
                loss = _step(model, opt, x, y)
    assert math.isfinite(loss.item())


@pytest.mark.parametrize("make", [_gpt, _llama], ids=["gpt", "llama"])
def test_greedy_generation_on_the_gpu_equals_the_cpu(make):
    prompt = np.array([[1, 5, 9, 2], [3, 3, 0, 7]])
    cpu = make().generate(prompt, max_new_tokens=24, temperature=0.0)
    gpu = make().to("cuda").generate(prompt, max_new_tokens=24, temperature=0.0)
    assert isinstance(gpu, np.ndarray) and np.array_equal(gpu, cpu)


def test_checkpoints_are_device_independent(tmp_path):
    m = _gpt().to("cuda")
    m.save_pretrained(tmp_path / "m")
    sl.save(m, tmp_path / "w.safetensors")
    back = sl.load_model(tmp_path / "m")                    # on the CPU
    assert back.device == "cpu"
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v.get())
    again = _gpt(1).to("cuda")
    again.load_state_dict(sl.load(tmp_path / "w.safetensors"))
    assert again.device == "cuda:0"
    close(again.transformer.wte.weight, m.transformer.wte.weight, 0, 0)


def test_train_cli_on_the_gpu_then_resume_on_the_cpu(tmp_path):
    from scratchllm.cli import main
    common = ["train", "--preset", "shakespeare-char", "--out", str(tmp_path / "run"), "--no-progress"]
    kv = ["n_layer=2", "n_embd=64", "n_head=4", "block_size=64", "batch_size=8", "eval_interval=4",
          "eval_batches=2", "sample_tokens=20", "log_interval=2"]
    assert main(common + ["--max-steps", "4"] + kv + ["device=cuda"]) == 0
    assert main(common + ["--max-steps", "6", "--resume"] + kv + ["device=cpu"]) == 0


def test_float16_autocast_with_loss_scaling_trains_like_float32():
    """sl.amp: Linear's products in float16 (float32 master weights and results) with a GradScaler;
    a few AdamW steps follow the float32 run to float16's precision."""
    x, w = _t((64, 128)), _t((96, 128), 1) * 0.1
    ref = F.linear(sl.Tensor(x, device="cuda"), sl.Tensor(w, device="cuda"))
    with sl.amp.autocast():
        y = F.linear(sl.Tensor(x, device="cuda"), sl.Tensor(w, device="cuda"))
    assert y.dtype == np.float32
    close(y, ref, 1e-2, 1e-2)
    runs = {}
    for amp in (False, True):
        model = _gpt().to("cuda")
        opt = sl.optim.AdamW(model.parameters(), lr=1e-3)
        scaler = sl.amp.GradScaler(enabled=amp)
        rng = np.random.default_rng(7)
        losses = []
        for _ in range(5):
            ids = rng.integers(0, 71, (4, 33))
            with sl.amp.autocast(enabled=amp):
                _, loss = model(sl.Tensor(ids[:, :-1], device="cuda"), sl.Tensor(ids[:, 1:], device="cuda"))
            scaler.scale(loss).backward()
            assert scaler.step(opt)
            scaler.update()
            opt.zero_grad()
            losses.append(loss.item())
        runs[amp] = losses
    np.testing.assert_allclose(runs[True], runs[False], rtol=1e-2)
