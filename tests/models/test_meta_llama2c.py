"""Meta consolidated.*.pth (read without torch) and llama2.c .bin give the HF reference's logits."""
import os
import pickle

import numpy as np
import pytest
import torch

import scratchllm as sl
from scratchllm.errors import ScratchLLMError
from scratchllm.io.pth import load_pth

from .model_helpers import hf_llama, hf_logits, hf_state_from_meta, meta_state_from_hf, write_llama2c, write_meta

# dim 64, multiple_of 32 -> Meta's hidden size 192 (= intermediate_size below)
PARAMS = {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 101, "multiple_of": 32,
          "norm_eps": 1e-5, "rope_theta": 500000.0}


def _ids(vocab, T=33):
    return np.random.default_rng(11).integers(0, vocab, size=(2, T))


@pytest.mark.parametrize("dtype,shards", [(torch.float32, 1), (torch.bfloat16, 1), (torch.float32, 2),
                                          (torch.bfloat16, 2)])
def test_meta_checkpoint_matches_hf(tmp_path, dtype, shards):
    hf = hf_llama(seed=21, intermediate=192)
    if dtype == torch.bfloat16:  # both sides see the same bf16-rounded weights
        with torch.no_grad():
            for p in hf.parameters():
                p.copy_(p.to(torch.bfloat16).float())
    write_meta(tmp_path / "meta", meta_state_from_hf(hf), PARAMS, shards=shards, dtype=dtype)
    model = sl.load_model(tmp_path / "meta")
    assert model.config.n_kv_heads == 2 and model.config.ffn_hidden_dim == 192
    ids = _ids(101)
    np.testing.assert_allclose(model(ids).numpy(), hf_logits(hf, ids), rtol=1e-4, atol=1e-4)


def test_meta_llama2_params_with_vocab_minus_one_and_rope_freqs(tmp_path):
    hf = hf_llama(seed=22, n_kv_heads=4, theta=10000.0, intermediate=192)
    state = meta_state_from_hf(hf)
    state["rope.freqs"] = torch.ones(8)  # Llama 2 checkpoints carry this table; it must be ignored
    params = {**PARAMS, "n_kv_heads": None, "vocab_size": -1, "rope_theta": 10000.0}
    del params["n_kv_heads"]
    write_meta(tmp_path, state, params)
    model = sl.load_model(tmp_path)
    assert model.config.vocab_size == 101 and model.config.rope_theta == 10000.0
    ids = _ids(101)
    np.testing.assert_allclose(model(ids).numpy(), hf_logits(hf, ids), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("version,tie", [(0, False), (0, True), (1, False), (2, False), (2, True)])
def test_llama2c_file_matches_hf(tmp_path, version, tie):
    hf = hf_llama(seed=23, theta=10000.0, tie=tie, intermediate=192, max_pos=64)
    cfg = {"dim": 64, "hidden_dim": 192, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 101,
           "seq_len": 64}
    stored = write_llama2c(tmp_path / "model.bin", meta_state_from_hf(hf), cfg, version=version)
    if version == 2:  # Q8_0: the reference gets the dequantized weights
        hf.load_state_dict(hf_state_from_meta(stored, hf.config), strict=False)  # lm_head shares when tied
    model = sl.load_model(tmp_path / "model.bin")
    assert model.config.tie_embeddings == tie and model.config.max_seq_len == 64
    ids = _ids(101)
    np.testing.assert_allclose(model(ids).numpy(), hf_logits(hf, ids), rtol=1e-4, atol=1e-4)


def test_llama2c_truncated_and_disagreeing_header(tmp_path):
    hf = hf_llama(seed=24, theta=10000.0, intermediate=192, max_pos=64)
    cfg = {"dim": 64, "hidden_dim": 192, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 101,
           "seq_len": 64}
    path = tmp_path / "m.bin"
    write_llama2c(path, meta_state_from_hf(hf), cfg, version=0)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(ScratchLLMError, match="truncated"):
        sl.load_model(path)
    path.write_bytes(data + b"\0" * 64)
    with pytest.raises(ScratchLLMError, match="disagrees"):
        sl.load_model(path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _EvilEval:
    def __reduce__(self):
        return eval, ("__import__('os').system('true')",)


@pytest.mark.parametrize("payload", ["system", "eval", "plain-pickle"])
def test_malicious_pth_is_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    folder = tmp_path / "meta"
    folder.mkdir()
    (folder / "params.json").write_text('{"dim": 8, "n_layers": 1, "n_heads": 2, "vocab_size": 10}')
    path = folder / "consolidated.00.pth"
    if payload == "system":
        torch.save({"tok_embeddings.weight": torch.zeros(10, 8), "x": _Evil(marker)}, path)
        expect = "system"
    elif payload == "eval":
        torch.save({"x": _EvilEval()}, path)
        expect = r"\.eval'"
    else:  # not even a zip: a bare pickle
        path.write_bytes(pickle.dumps(_Evil(marker)))
        expect = "not a PyTorch zip"
    with pytest.raises(ScratchLLMError, match=expect) as err:
        sl.load_model(folder)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_pth_reader_handles_strided_and_offset_tensors(tmp_path):
    base = torch.randn(6, 10, dtype=torch.float64)
    state = {"t": base.t(), "s": base[1:4, 2:7].float(), "h": torch.randn(3, 5).half(),
             "b": torch.randn(4, 4).bfloat16()}
    torch.save(state, tmp_path / "x.pth")
    got = load_pth(str(tmp_path / "x.pth"))
    for k, v in state.items():
        assert got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], v.float().numpy())
