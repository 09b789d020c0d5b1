"""Generation on the GPU: the one decoder (models/decode.py) with its KV cache on CuPy arrays.

Collected only with SCRATCHLLM_TEST_CUDA=1 (conftest.py): on a GPU by scripts/gpu_check.sh, and
on any machine against the stand-in CuPy (tests/device/fakecupy, run by test_device_cpu.py).
Oracles: the CPU decoder (itself checked against the Tensor forward and HF in tests/models),
and HF transformers' greedy ``generate`` on the same GPU where torch sees CUDA.
"""
import cupy as cp
import numpy as np
import pytest

import scratchllm as sl
from scratchllm.errors import ScratchLLMError
from scratchllm.models import GPTConfig, decode
from scratchllm.models.decode import Decoder

from models.decoder_models import CONFIGS as CPU_CONFIGS, random_model

FAKE = cp.__version__.endswith("fake")

CONFIGS = {**CPU_CONFIGS,   # tests/models/test_fast_decode.py's shapes, plus the speedrun options (RecipeGPTDecoder)
           "gpt-recipe": GPTConfig(vocab_size=61, block_size=40, n_layer=2, n_head=2, n_embd=16, qk_norm=True,
                                   positional="rope", value_embeds=True, mlp_act="relu2", tie_weights=False,
                                   logit_softcap=15.0),
           "gpt-rope-gelu": GPTConfig(vocab_size=61, block_size=40, n_layer=1, n_head=2, n_embd=16, positional="rope")}


def _model(name, dtype=np.float32, seed=0):
    """A config or a name in CONFIGS, with random weights (``decoder_models.random_model``)."""
    return random_model(CONFIGS[name] if isinstance(name, str) else name, dtype, seed)


def _host(a):
    return a.get() if isinstance(a, cp.ndarray) else np.asarray(a)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype, rtol, atol", [(np.float64, 1e-10, 1e-10), (np.float32, 1e-4, 1e-4)])
def test_decode_steps_on_the_gpu_equal_the_cpu_decoder(name, dtype, rtol, atol):
    """A prompt, a chunk on a filled cache, then single tokens: each step's logits (host arrays) and
    the cache's keys and values on the GPU equal the CPU decoder's."""
    cpu_model = _model(name, dtype)
    gpu_model = _model(name, dtype).to("cuda")
    ids = np.random.default_rng(1).integers(0, 61, size=(2, 20))
    ref, dec = cpu_model.decoder(2, 20), gpu_model.decoder(2, 20)
    assert isinstance(dec, Decoder) and dec.device == "cuda:0" and type(dec) is type(ref)
    assert all(isinstance(a, cp.ndarray) for a in dec.cache.k + dec.cache.v)
    end = 0
    for n in [7, 5] + [1] * 8:
        want, got = ref.step(ids[:, end:end + n]), dec.step(ids[:, end:end + n])
        end += n
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == (2, 61)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    assert dec.cache.pos == ref.cache.pos == end
    for layer in range(len(ref.cache.k)):
        np.testing.assert_allclose(_host(dec.cache.k[layer])[:, :, :end], ref.cache.k[layer][:, :, :end], rtol, atol)
        np.testing.assert_allclose(_host(dec.cache.v[layer])[:, :, :end], ref.cache.v[layer][:, :, :end], rtol, atol)


@pytest.mark.parametrize("name", ["gpt", "gpt-recipe", "llama-gqa"])
def test_decode_greedy_ids_on_the_gpu_equal_the_cpu(name):
    prompt = np.array([[1, 5, 9, 2], [3, 3, 0, 7]])
    cpu = _model(name).generate(prompt, max_new_tokens=30, temperature=0.0)
    gpu = _model(name).to("cuda").generate(prompt, max_new_tokens=30, temperature=0.0)
    assert isinstance(gpu, np.ndarray) and np.array_equal(gpu, cpu)
    streamed = list(_model(name).to("cuda").stream(prompt[0], max_new_tokens=10, temperature=0.0))
    assert streamed == cpu[0, 4:14].tolist()


def test_decode_sampling_on_the_gpu_equals_the_cpu():
    """Sampling stays on the host: the same seed draws the same tokens from the GPU's logits."""
    prompt = np.array([[1, 2, 3]])
    kw = dict(max_new_tokens=20, temperature=0.8, top_k=20, top_p=0.9, seed=3)
    np.testing.assert_array_equal(_model("llama-gqa").to("cuda").generate(prompt, **kw),
                                  _model("llama-gqa").generate(prompt, **kw))


def test_decode_on_the_gpu_uses_the_cache_and_one_host_copy_per_token(monkeypatch):
    """Past the prompt every step feeds one position through the decoder (the KV cache holds the
    rest; the Tensor model is never run), and each step brings back only the (B, vocab) logits."""
    model = _model("gpt").to("cuda")
    fed, copies = [], []

    def no_forward(*a, **k):
        raise AssertionError("generation ran the Tensor model")

    logits, to_host = Decoder.logits, decode.to_host
    monkeypatch.setattr(type(model), "forward", no_forward)
    monkeypatch.setattr(Decoder, "logits", lambda self, ids: fed.append(ids.shape) or logits(self, ids))
    monkeypatch.setattr(decode, "to_host", lambda a: copies.append(a.shape) or to_host(a))
    before = cp.HOST_COPIES[0] if FAKE else None
    out = model.generate(np.array([[1, 5, 9, 2, 4], [3, 3, 0, 7, 1]]), max_new_tokens=12, temperature=0.0)
    assert out.shape == (2, 17)
    assert fed == [(2, 5)] + [(2, 1)] * 11                  # prefill, then one position per new token
    assert copies == [(2, 61)] * 12                          # one (B, vocab) copy per new token
    if FAKE:                                                 # the stand-in counts every device -> host copy
        assert cp.HOST_COPIES[0] - before == 12
    assert all(isinstance(a, cp.ndarray) for a in model.new_cache(1, 4).k)   # serve/'s caches follow the model


def test_decode_past_the_context_on_the_gpu_equals_the_cpu():
    """Past the context the window is re-read into the emptied cache (nanoGPT's crop), as on the CPU."""
    prompt = np.random.default_rng(4).integers(0, 61, size=(1, 30))
    cpu = _model("llama-gqa").generate(prompt, max_new_tokens=16, temperature=0.0)      # 46 > 40 positions
    gpu = _model("llama-gqa").to("cuda").generate(prompt, max_new_tokens=16, temperature=0.0)
    np.testing.assert_array_equal(gpu, cpu)


def test_decode_int8_on_the_gpu_is_one_clear_error():
    from scratchllm.models.quant import set_generation_quant
    model = set_generation_quant(_model("gpt").to("cuda"), "q8_0")
    with pytest.raises(ScratchLLMError, match="int8 generation .* runs on the CPU"):
        model.generate(np.array([[1, 2]]), max_new_tokens=2, temperature=0.0)


def test_decode_generate_cli_on_the_gpu(tmp_path, capsys):
    """``scratchllm generate --device cuda`` prints the CPU's greedy text."""
    from scratchllm.cli import main
    _model(GPTConfig(vocab_size=261, block_size=40, n_layer=2, n_head=2, n_embd=16)).save_pretrained(tmp_path / "m")
    tok = sl.BPETokenizer.train("hello world, the decoder on a gpu " * 4, 256 + 5)
    tok.save(tmp_path / "tok.json")
    texts = []
    for device in ("cpu", "cuda"):
        args = ["generate", "--model", str(tmp_path / "m"), "--tokenizer", str(tmp_path / "tok.json"),
                "--prompt", "hello", "--max-new-tokens", "8", "--temperature", "0", "--device", device]
        assert main(args) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and texts[0].startswith("hello")


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_decode_greedy_on_the_gpu_equals_hf(arch, tmp_path):
    """Greedy ids against HF transformers' generate (KV cache) on the same GPU, same weights; where
    torch has no CUDA (or no transformers) against our CPU decoder, which tests/models checks against HF."""
    model = _model("gpt" if arch == "gpt2" else "llama-gqa")
    prompt = np.random.default_rng(5).integers(0, 61, size=(2, 6))
    n = 24
    ref = None
    try:
        import torch
        import transformers
        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = False
            model.save_pretrained(tmp_path / "hf", format="hf")
            hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").to("cuda").eval()
            with torch.no_grad():
                ref = hf.generate(torch.tensor(prompt, device="cuda"), attention_mask=torch.ones(
                    prompt.shape, dtype=torch.long, device="cuda"), max_new_tokens=n, min_new_tokens=n,
                    do_sample=False, pad_token_id=0, eos_token_id=None).cpu().numpy()
    except ImportError:
        pass
    if ref is None:
        ref = model.generate(prompt, max_new_tokens=n, temperature=0.0)
    np.testing.assert_array_equal(model.to("cuda").generate(prompt, max_new_tokens=n, temperature=0.0), ref)
