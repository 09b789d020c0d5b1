"""DPO: the loss and its gradient against torch (the paper's formula); a short run learns."""
import json

import numpy as np
import pytest
import torch

from finetune_helpers import PREFERENCES, make_base_run
from scratchllm import Tensor
from scratchllm.finetune.chat_template import get_template
from scratchllm.finetune.config import FinetuneConfig
from scratchllm.finetune.dpo import dpo_loss, encode_preferences, sequence_logps
from scratchllm.finetune.trainer import finetune


def torch_dpo(pc, pr, rc, rr, beta):
    logits = beta * ((pc - rc) - (pr - rr))          # Rafailov et al., eq. 7
    return -torch.nn.functional.logsigmoid(logits).mean()


@pytest.mark.parametrize("beta,scale", [(0.1, 5.0), (0.5, 1.0), (2.0, 200.0)])
def test_loss_and_gradient_match_torch(beta, scale):
    rng = np.random.default_rng(int(beta * 10))
    pc, pr, rc, rr = (rng.normal(-30, scale, 9) for _ in range(4))
    a, b = Tensor(pc, dtype=np.float64, requires_grad=True), Tensor(pr, dtype=np.float64, requires_grad=True)
    loss, stats = dpo_loss(a, b, rc, rr, beta)
    loss.backward()
    ta, tb = torch.tensor(pc, requires_grad=True), torch.tensor(pr, requires_grad=True)
    t = torch_dpo(ta, tb, torch.tensor(rc), torch.tensor(rr), beta)
    t.backward()
    np.testing.assert_allclose(loss.item(), t.item(), rtol=1e-12)
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-10, atol=1e-300)
    z = beta * ((pc - rc) - (pr - rr))
    assert stats["accuracy"] == pytest.approx((z > 0).mean())
    assert stats["reward_margin"] == pytest.approx(z.mean())


def test_sequence_logps_match_torch():
    from finetune_helpers import tiny_model
    model = tiny_model("gpt")
    model.eval()
    x = np.random.default_rng(0).integers(0, model.vocab_size, (3, 7))
    y = np.where(np.arange(7) >= 3, x, -100)
    ours = sequence_logps(model, x, y).numpy()
    logp = torch.log_softmax(torch.tensor(model(x).numpy(), dtype=torch.float64), -1)
    want = [sum(logp[b, t, y[b, t]].item() for t in range(7) if y[b, t] != -100) for b in range(3)]
    np.testing.assert_allclose(ours, want, rtol=1e-5)


def test_preference_records_render_prompt_once(tmp_path):
    from scratchllm.tokenizers import load_tokenizer
    rec = json.loads(PREFERENCES.read_text())[0]
    pair = encode_preferences([rec], get_template("alpaca"), load_tokenizer("gpt2"), 1024)[0]
    tok = load_tokenizer("gpt2")
    for sample, key in ((pair.chosen, "chosen"), (pair.rejected, "rejected")):
        scored = [int(t) for t in sample.targets if t != -100]
        assert tok.decode(scored) == rec[key] + "<|endoftext|>"
    n = int((pair.chosen.targets == -100).sum())
    assert pair.chosen.ids[:n].tolist() == pair.rejected.ids[:n].tolist()   # the same prompt


def test_short_dpo_run_raises_held_out_preference_accuracy(tmp_path):
    base = tmp_path / "base"
    make_base_run(base, block=64)
    words = ("red green blue cat dog sun moon tree rock bird fish star lake hill road door "
             "book cake milk rain snow wind fire leaf").split()
    recs = [{"instruction": f"Is {w} a word?", "input": "", "chosen": "yes",
             "rejected": "no"} for w in words]
    (tmp_path / "prefs.json").write_text(json.dumps(recs))
    cfg = FinetuneConfig(init_from=str(base), data=[str(tmp_path / "prefs.json")], dpo=True,
                         template="chatml", dpo_beta=0.5, val_fraction=0.25, max_steps=12,
                         eval_interval=12, batch_size=6, lr=3e-3, warmup_steps=0,
                         sample_tokens=0, eval_batches=4)
    result = finetune(cfg, tmp_path / "dpo", progress=False, log=lambda m: None)
    rows = [json.loads(l) for l in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["accuracy"] == 0.0 and rows[0]["reward_margin"] == 0.0   # policy == reference
    assert result.last_stats["accuracy"] == 1.0 and result.last_stats["reward_margin"] > 0.1
    assert result.last_val_loss < result.val_before


def test_dpo_data_needs_chosen_and_rejected():
    from scratchllm.errors import ScratchLLMError
    from scratchllm.tokenizers import load_tokenizer
    with pytest.raises(ScratchLLMError, match="record 0: missing or non-string field 'rejected'"):
        encode_preferences([{"instruction": "x", "chosen": "y"}], get_template("alpaca"),
                           load_tokenizer("gpt2"), 64)
