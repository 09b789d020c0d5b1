"""SFT: the masked loss, special tokens, padding, bit-exact resume, bad data, the CLI."""
import json

import numpy as np
import pytest

from finetune_helpers import INSTRUCTIONS, PREFERENCES, make_base_run, tiny_model
from scratchllm.finetune.chat_template import encode_chat, get_template
from scratchllm.finetune.config import FinetuneConfig
from scratchllm.finetune.data import (IGNORE, Sample, add_special_tokens, grow_embeddings,
                                      make_sample, pad_batch)
from scratchllm.finetune.trainer import finetune


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    model, tok = make_base_run(folder)
    data = folder.parent / "sft.json"
    recs = [r for r in json.loads(INSTRUCTIONS.read_text())[:80] if len(r["output"]) < 60][:24]
    data.write_text(json.dumps(recs))
    return folder, tok, data


def test_loss_is_the_mean_over_assistant_tokens_only():
    from scratchllm.tokenizers import load_tokenizer
    tok = load_tokenizer("gpt2")
    t = get_template("alpaca")
    msgs = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
    ids, mask = encode_chat(t, tok, msgs)
    s = make_sample(ids, mask, context=64)
    reply = tok.encode("Blue.") + [50256]
    assert s.targets[-len(reply):].tolist() == reply                    # the reply and its eos
    assert (s.targets[:-len(reply)] == IGNORE).all()                      # nothing else
    model = tiny_model("gpt", block_size=64)
    grow_embeddings(model, tok.vocab_size)
    x, y = pad_batch([s, make_sample(ids[:-2] + [50256], mask[:-2] + [True], context=64)])
    model.eval()
    _, loss = model(x, y)
    logits = model(x).numpy().astype(np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    picked = [-logp[b, t, y[b, t]] for b in range(2) for t in range(y.shape[1]) if y[b, t] != IGNORE]
    assert len(picked) == len(reply) + 2
    np.testing.assert_allclose(loss.item(), np.mean(picked), rtol=1e-5)


def test_padding_keeps_each_row_unchanged():
    model = tiny_model("gpt")
    model.eval()
    a = Sample(np.arange(1, 8), np.array([IGNORE] * 3 + [5, 6, 7]))
    b = Sample(np.arange(3, 6), np.array([4, 5]))
    x, y = pad_batch([a, b])
    assert x.shape == (2, 6) and (y[1, 2:] == IGNORE).all()
    alone = model(x[1:, :2]).numpy()
    np.testing.assert_allclose(model(x).numpy()[1, :2], alone[0], rtol=1e-5, atol=1e-6)


def test_special_tokens_added_and_embedding_grows_with_mean(base):
    _, tok, _ = base
    new, added = add_special_tokens(tok, get_template("chatml").special_tokens)
    assert added == ["<|im_start|>", "<|im_end|>"]
    assert new.special_tokens["<|im_end|>"] == tok.vocab_size + 1
    model = tiny_model("llama")
    old = model.tok_embeddings.weight.numpy().copy()
    assert grow_embeddings(model, model.vocab_size + 2) == 2
    W = model.tok_embeddings.weight.numpy()
    np.testing.assert_array_equal(W[:-2], old)
    np.testing.assert_allclose(W[-1], old.astype(np.float64).mean(0), rtol=1e-6)
    if not model.config.tie_embeddings:
        np.testing.assert_allclose(model.output.weight.numpy()[-1],
                                   model.output.weight.numpy()[:-2].astype(np.float64).mean(0), rtol=1e-6)
    assert model(np.array([[model.vocab_size - 1]])).shape[-1] == model.vocab_size


def _cfg(base, **kw):
    folder, _, data = base
    d = dict(init_from=str(folder), data=[str(data)], max_steps=6, eval_interval=3, batch_size=3,
             log_interval=1, lr=3e-3, eval_batches=1, sample_tokens=4)
    d.update(kw)
    return FinetuneConfig(**d)


@pytest.mark.parametrize("lora,dpo", [(False, False), (True, False), (True, True)])
def test_resume_is_bit_exact(base, tmp_path, lora, dpo):
    kw = dict(lora=True, lora_r=2, lora_dropout=0.2) if lora else {}
    if dpo:
        prefs = [r for r in json.loads(PREFERENCES.read_text())[:80]
                 if len(r["chosen"]) + len(r["rejected"]) < 120][:16]
        (tmp_path / "prefs.json").write_text(json.dumps(prefs))
        kw.update(dpo=True, data=[str(tmp_path / "prefs.json")], val_fraction=0.2)
    whole = finetune(_cfg(base, **kw), tmp_path / "whole", progress=False, log=lambda m: None)
    finetune(_cfg(base, **kw), tmp_path / "cut", stop_at_step=4, progress=False, log=lambda m: None)
    again = finetune(_cfg(base, **kw), tmp_path / "cut", resume=True, progress=False,
                     log=lambda m: None)
    assert again.step == whole.step == 6 and again.last_val_loss == whole.last_val_loss
    name = "adapter_model.safetensors" if lora else "model.safetensors"
    for f in (name, "optimizer.safetensors"):
        assert (tmp_path / "whole" / "latest" / f).read_bytes() == \
            (tmp_path / "cut" / "latest" / f).read_bytes(), f
    rows = lambda p: [{k: v for k, v in json.loads(l).items() if k != "elapsed_s"}  # noqa: E731
                      for l in (p / "metrics.jsonl").read_text().splitlines()]
    assert rows(tmp_path / "whole") == rows(tmp_path / "cut")
    assert whole.best_val_loss < whole.val_before or dpo


@pytest.mark.parametrize("arch,targets", [("gpt", "c_attn"), ("llama", "q,k,up")])
def test_lora_run_leaves_base_alone_and_writes_a_loadable_model(base, tmp_path, arch, targets):
    import scratchllm as sl
    from scratchllm.finetune.lora import load_adapter
    folder, _, data = base
    if arch == "llama":
        folder = tmp_path / "llama_base"
        make_base_run(folder, arch="llama")
    before = (folder / "model.safetensors").read_bytes()
    finetune(_cfg((folder, None, data), lora=True, lora_targets=targets, template="chatml"),
             tmp_path / "r", progress=False, log=lambda m: None)
    assert (folder / "model.safetensors").read_bytes() == before
    merged = sl.load_model(str(tmp_path / "r"))                  # a whole model, adapters merged
    again = sl.load_model(str(folder))
    grow_embeddings(again, merged.vocab_size)
    load_adapter(again, tmp_path / "r" / "adapter")
    ids = np.array([[5, 9, 33, 2]])
    np.testing.assert_allclose(merged(ids).numpy(), again(ids).numpy(), rtol=1e-4, atol=1e-5)
    want = ["c_attn"] if arch == "gpt" else ["k_proj", "q_proj", "up_proj"]
    assert json.loads((tmp_path / "r" / "adapter" / "adapter_config.json").read_text())[
        "target_modules"] == want


BAD = {
    "missing field": ([{"instruction": "x"}], "missing field 'output'"),
    "empty messages": ([{"messages": []}], "'messages' must be a non-empty list"),
    "bad role": ([{"messages": [{"role": "bot", "content": "x"}]}], "role 'bot'"),
    "no reply": ([{"messages": [{"role": "user", "content": "x"}]}], "no assistant message"),
    "too long": ([{"instruction": "word " * 400, "output": "x"}], "longer than the model's context"),
    "not json": ("{oops", "is not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_data_one_clear_line_nothing_written(base, tmp_path, capsys, case):
    from scratchllm.cli import main
    folder, _, _ = base
    recs, message = BAD[case]
    data = tmp_path / "bad.json"
    data.write_text(recs if isinstance(recs, str) else json.dumps(recs + [
        {"instruction": "ok", "input": "", "output": "fine"}]))
    out = tmp_path / "out"
    rc = main(["finetune", "--init-from", str(folder), "--data", str(data), "--out", str(out),
               "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_template_token_missing_from_a_fixed_tokenizer(tmp_path, capsys):
    from scratchllm.cli import main
    model = tiny_model("gpt")
    grow_embeddings(model, 50257)
    model.save_pretrained(tmp_path / "gpt2like")
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n')
    rc = main(["finetune", "--init-from", str(tmp_path / "gpt2like"), "--data", str(data),
               "--template", "chatml", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "<|im_start|>" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_cli_runs_and_resumes(base, tmp_path, capsys):
    from scratchllm.cli import main
    folder, _, data = base
    out = tmp_path / "cli"
    argv = ["finetune", "--init-from", str(folder), "--data", str(data), "--out", str(out),
            "--lora", "--no-progress", "max_steps=2", "eval_interval=2", "batch_size=2",
            "eval_batches=1", "sample_tokens=3", "log_interval=1"]
    assert main(argv) == 0
    assert main(["finetune", "--out", str(out), "--resume", "--no-progress", "max_steps=3"]) == 0
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and "val_loss" in rows[0]
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and (out / "loss.png").is_file()
    assert "sample reply" in capsys.readouterr().err


def test_lora_continued_pretraining_on_plain_text(base, tmp_path):
    folder, _, _ = base
    before = (folder / "model.safetensors").read_bytes()
    text = tmp_path / "book.txt"
    text.write_text("the cat sat on the mat. " * 200)
    r = finetune(_cfg(base, data=[str(text)], lora=True, lora_r=4, lr=1e-2, max_len=32,
                      max_steps=6, eval_interval=6), tmp_path / "cont", progress=False,
                 log=lambda m: None)
    assert r.best_val_loss < r.val_before
    assert (tmp_path / "cont" / "adapter" / "adapter_model.safetensors").is_file()
    assert (folder / "model.safetensors").read_bytes() == before


def test_run_stopped_before_its_first_checkpoint_starts_over(base, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "finetune_config.json").write_text(json.dumps(_cfg(base).to_dict()))
    r = finetune(_cfg(base, max_steps=1, eval_interval=1), out, resume=True, progress=False,
                 log=lambda m: None)
    assert r.step == 1 and (out / "latest" / "trainer_state.json").is_file()
