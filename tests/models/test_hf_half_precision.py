"""bf16 and f16 HF folders (how most Llama weights are published) against HF's own logits.

The folder is written by transformers itself (``.to(torch.bfloat16)`` / ``.half()`` and
``save_pretrained``), so its safetensors hold BF16 / F16 tensors. The oracle is HF reading that
same folder in float32 (``from_pretrained(dtype=float32)``): the same rounded weights, float32
arithmetic, RoPE tables computed afresh. Reading bf16 bits wrongly (e.g. a plain
``astype(float32)`` of the raw uint16) puts the weights off by ~10^4 and the logits by units.
"""
import json
import struct

import numpy as np
import pytest
import torch
import transformers

import scratchllm as sl

from .model_helpers import hf_gpt2, hf_llama, hf_logits

CASES = [("gpt2", torch.bfloat16, "BF16"), ("gpt2", torch.float16, "F16"),
         ("llama", torch.bfloat16, "BF16"), ("llama", torch.float16, "F16")]
EMBEDDING = {"gpt2": ("transformer.wte.weight", "transformer.wte.weight"),
             "llama": ("tok_embeddings.weight", "model.embed_tokens.weight")}


def _stored_dtypes(folder) -> set:
    """The dtypes named in the safetensors header (read here, independently of our reader)."""
    with open(folder / "model.safetensors", "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


@pytest.mark.parametrize("arch,dtype,stored", CASES, ids=[f"{a}-{s}" for a, _, s in CASES])
def test_half_precision_folder_logits_equal_hf_float32(tmp_path, arch, dtype, stored):
    full = hf_gpt2(seed=11) if arch == "gpt2" else hf_llama(seed=11)
    full.to(dtype).save_pretrained(tmp_path)
    assert _stored_dtypes(tmp_path) == {stored}
    ref_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = np.random.default_rng(4).integers(0, full.config.vocab_size, size=(2, 48))
    ref = hf_logits(ref_model, ids)
    assert ref.std() > 0.5  # not near uniform

    model = sl.load_model(tmp_path)
    ours_name, hf_name = EMBEDDING[arch]
    emb = model.state_dict()[ours_name]
    assert emb.dtype == np.float32
    np.testing.assert_array_equal(emb, ref_model.state_dict()[hf_name].numpy())   # exact: bf16/f16 -> f32
    out = model(ids)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-4)
