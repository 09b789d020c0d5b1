"""HF transformers peers for ``bench generate``: the same weights, HF's generate().

The scratchllm model is written with ``save_pretrained(dir, format="hf")`` and
read back by ``transformers.AutoModelForCausalLM`` (GPT2LMHeadModel or
LlamaForCausalLM), so the benchmark also checks our HF export end to end.
torch / transformers are imported inside the functions only.
"""


def hf_from_scratchllm(model, folder, threads: int):
    """Save ``model`` as an HF folder and load it in transformers (float32, eval mode)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(threads)
    model.save_pretrained(str(folder), format="hf")
    hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    hf.eval()
    gc = hf.generation_config
    gc.eos_token_id = None  # generate exactly max_new_tokens, as scratchllm does with stop_tokens=()
    gc.pad_token_id = 0
    gc.do_sample = False
    gc.temperature = gc.top_k = gc.top_p = None
    return hf


def hf_generate(hf, ids, max_new_tokens: int):
    """Greedy ``generate`` with HF's KV cache; ids (B, T) int array -> int64 array (B, T + new)."""
    import torch

    x = torch.from_numpy(ids)
    with torch.inference_mode():
        out = hf.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                          max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, use_cache=True)
    return out.numpy()
