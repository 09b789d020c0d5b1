"""Training with the speedrun recipe: Muon + WSD + the GPT options, resumed bit for bit."""
import json

import pytest

from scratchllm.errors import ScratchLLMError
from scratchllm.io.checkpoint import load
from scratchllm.optim.schedules import set_lr, warmup_stable_decay
from scratchllm.train import Trainer, train
from scratchllm.train.setup import make_optimizer

from train.conftest import check_resume_is_exact

RECIPE = dict(optimizer="muon", muon_lr=0.03, schedule="wsd", decay_frac=0.4, positional="rope", qk_norm=True,
              mlp_act="relu2", zero_init_proj=True, tie_weights=False, logit_softcap=15.0, value_embeds=True)


def test_recipe_resume_is_exact(tiny, tmp_path):
    cfg = tiny(max_steps=8, eval_interval=4, n_layer=2, dropout=0.1, **RECIPE)
    check_resume_is_exact(cfg, tmp_path, stop_at=5)
    opt = load(tmp_path / "b" / "latest" / "optimizer.safetensors")
    assert any(k.endswith("momentum_buffer") for k in opt) and any(k.endswith("exp_avg") for k in opt)
    rows = [[(r["step"], r["loss"]) for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]
            for out in (tmp_path / "a", tmp_path / "b")]
    assert rows[0] == rows[1] and len(rows[0]) == 8
    saved = json.loads((tmp_path / "b" / "latest" / "config.json").read_text())
    assert {k: saved[k] for k in ("positional", "qk_norm", "mlp_act", "tie_weights", "value_embeds")} == \
        {k: RECIPE[k] for k in ("positional", "qk_norm", "mlp_act", "tie_weights", "value_embeds")}


def test_muon_optimizer_groups_and_schedule(tiny, tmp_path):
    cfg = tiny(**RECIPE)
    trainer = Trainer(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    opt = trainer.optimizer
    assert [g["use_muon"] for g in opt.param_groups] == [True, False, False]
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert all(names[id(p)].endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))
               for p in opt.param_groups[0]["params"])
    assert trainer.lr_at(cfg.max_steps // 2) == cfg.lr                      # WSD: the stable part
    step = cfg.max_steps - 2
    assert trainer.lr_at(step) == warmup_stable_decay(step, cfg.lr, cfg.warmup(), cfg.max_steps, cfg.min_lr, 0.4)
    set_lr(opt, trainer.lr_at(step))
    assert opt.param_groups[0]["lr"] == pytest.approx(trainer.lr_at(step) * cfg.muon_lr / cfg.lr)
    assert opt.param_groups[1]["lr"] == trainer.lr_at(step)


def test_adamw_stays_the_default(tiny, tmp_path):
    cfg = tiny()
    assert (cfg.optimizer, cfg.schedule, cfg.positional, cfg.mlp_act, cfg.tie_weights) == \
        ("adamw", "cosine", "learned", "gelu", True)
    trainer = Trainer(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    assert type(make_optimizer(trainer.model, cfg)).__name__ == "AdamW"
    assert trainer.model.config.is_gpt2


@pytest.mark.parametrize("bad, match", [(dict(optimizer="sgd"), "optimizer must be"),
                                        (dict(schedule="linear"), "schedule must be"),
                                        (dict(arch="llama", qk_norm=True), "options of arch 'gpt' only"),
                                        (dict(mlp_act="tanh"), "mlp_act"), (dict(decay_frac=2), "decay_frac")])
def test_bad_recipe_keys_are_named(tiny, bad, match):
    with pytest.raises(ScratchLLMError, match=match):
        tiny(**bad)


def test_recipe_keys_fix_the_run(tiny, tmp_path):
    quiet = dict(progress=False, log=lambda m: None)
    train(tiny(max_steps=2, eval_interval=2), tmp_path / "a", **quiet)
    with pytest.raises(ScratchLLMError, match="qk_norm"):
        train(tiny(max_steps=4, eval_interval=2, qk_norm=True), tmp_path / "a", resume=True, **quiet)


def test_resume_takes_a_new_muon_lr(tiny, tmp_path):
    quiet = dict(progress=False, log=lambda m: None)
    train(tiny(max_steps=4, eval_interval=2, optimizer="muon"), tmp_path / "a", stop_at_step=2, **quiet)
    cfg = tiny(max_steps=4, eval_interval=2, optimizer="muon", muon_lr=0.005)
    trainer = Trainer(cfg, tmp_path / "a", resume=True, **quiet)
    assert trainer.optimizer.param_groups[0]["lr_scale"] == 0.005 / cfg.lr
    assert trainer.optimizer.param_groups[0]["use_muon"] and trainer.optimizer.state
