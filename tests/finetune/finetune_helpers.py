"""Tiny models for the fine-tuning tests: ours, and the same weights in transformers."""
from pathlib import Path

import numpy as np

from scratchllm.autograd.random import manual_seed
from scratchllm.models import build_model

GPT_CFG = {"model_type": "gpt", "vocab_size": 61, "block_size": 32, "n_layer": 2, "n_head": 2,
           "n_embd": 16, "dropout": 0.0, "bias": True}
LLAMA_CFG = {"model_type": "llama", "vocab_size": 61, "dim": 32, "n_layers": 2, "n_heads": 4,
             "n_kv_heads": 2, "multiple_of": 16, "max_seq_len": 32, "dropout": 0.0}


def tiny_model(arch="gpt", seed=0, **overrides):
    manual_seed(seed)
    return build_model({**(GPT_CFG if arch == "gpt" else LLAMA_CFG), **overrides})


def hf_copy(model, folder, dtype=None):
    """The same weights as a transformers model (float32, or ``dtype``)."""
    import torch
    from transformers import AutoModelForCausalLM
    model.save_pretrained(str(folder), format="hf")
    hf = AutoModelForCausalLM.from_pretrained(str(folder), torch_dtype=dtype or torch.float32)
    return hf.eval()


def randomize_adapters(model, seed=1, scale=0.3):
    from scratchllm.finetune.lora import lora_modules
    rng = np.random.default_rng(seed)
    for m in lora_modules(model).values():
        for lin in (m.lora_A, m.lora_B):
            w = lin.weight.data
            w[...] = rng.normal(0, scale, w.shape).astype(w.dtype)


def ids_batch(vocab, B=2, T=9, seed=3):
    return np.random.default_rng(seed).integers(0, vocab, (B, T))


def make_hf_tokenizer(tmp_path, chat_template, bos="<|begin_of_text|>", eos="<|eot_id|>"):
    """A tiny transformers fast tokenizer saved to and loaded from tmp_path (no network)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, bos: 1, eos: 2, "hello": 3}
    core = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=bos, eos_token=eos,
                                  unk_token="[UNK]")
    tok.chat_template = chat_template
    folder = tmp_path / "hf_tok"
    tok.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder), folder


def make_base_run(folder, vocab=300, arch="gpt", block=256, seed=0):
    """A tiny base model folder as scratchllm writes it: model + a trained BPE tokenizer."""
    import json
    from scratchllm.tokenizers.bpe import BPETokenizer
    from scratchllm.train.tokenizer_files import RunTokenizer
    recs = json.loads(INSTRUCTIONS.read_text())[:60]
    text = " ".join(r["instruction"] + " " + r["output"] for r in recs)
    tok = BPETokenizer.train(text, vocab, pattern="gpt4")
    manual_seed(seed)
    cfg = dict(GPT_CFG if arch == "gpt" else LLAMA_CFG)
    cfg["vocab_size"] = tok.vocab_size
    cfg["block_size" if arch == "gpt" else "max_seq_len"] = block
    model = build_model(cfg)
    model.save_pretrained(folder)
    RunTokenizer(tok, "bpe").save(folder)
    return model, tok


DATA = Path(__file__).resolve().parents[1] / "data" / "instructions"
INSTRUCTIONS = DATA / "instruction-data.json"
PREFERENCES = DATA / "instruction-data-with-preference.json"
