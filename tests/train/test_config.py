"""TrainConfig parsing, presets, config files; checkpoint folder swapping; the metrics log."""
import json
import os

import pytest

from scratchllm.errors import ScratchLLMError
from scratchllm.train.checkpoint import STATE, find_checkpoint, mirror_files, write_folder_atomically
from scratchllm.train.config import TrainConfig, identity_diff, parse_overrides, read_config_file
from scratchllm.train.metrics import MetricsLog, plot_losses
from scratchllm.train.presets import PRESETS, preset_config


def test_overrides_are_parsed_to_field_types():
    cfg = TrainConfig().updated(parse_overrides(
        ["n_layer=6", "lr=1e-3", "top_k=none", "bias=false", "data=a.txt", "n_kv_head=2", "sample_prompt=ROMEO:"]))
    assert (cfg.n_layer, cfg.lr, cfg.top_k, cfg.bias, cfg.data, cfg.n_kv_head) == (6, 1e-3, None, False, ["a.txt"], 2)
    assert cfg.sample_prompt == "ROMEO:"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()


@pytest.mark.parametrize("overrides, message", [
    ({"n_layers": "4"}, "unknown config key 'n_layers'"),
    ({"n_layer": "four"}, "'n_layer' expects int, got 'four'"),
    ({"n_layer": 2.5}, "'n_layer' expects int"),
    ({"bias": "maybe"}, "'bias' expects bool"),
    ({"n_embd": "130"}, "divisible by n_head"),
    ({"arch": "rnn"}, "arch must be"),
    ({"val_fraction": "0"}, "val_fraction"),
    ({"tokenizer": "none"}, "needs init_from"),
])
def test_bad_config_values(overrides, message):
    with pytest.raises(ScratchLLMError, match=message):
        TrainConfig().updated(overrides)


def test_bad_override_syntax():
    with pytest.raises(ScratchLLMError, match="expected key=value"):
        parse_overrides(["n_layer"])


def test_presets():
    assert set(PRESETS) == {"shakespeare-char", "shakespeare-char-speedrun", "shakespeare-bpe", "llama-tiny"}
    c = preset_config("shakespeare-char")
    assert (c.n_layer, c.n_head, c.n_embd, c.block_size, c.tokenizer, c.preset) == (4, 4, 128, 128, "char",
                                                                                    "shakespeare-char")
    assert preset_config("llama-tiny").arch == "llama" and preset_config("shakespeare-bpe").tokenizer == "bpe"
    # the speedrun preset: the main job's model and data, the recipe's options, 2,400 steps
    old, new = preset_config("shakespeare-char").to_dict(), preset_config("shakespeare-char-speedrun").to_dict()
    changed = {k for k in old if old[k] != new[k]}
    assert changed == {"preset", "max_steps", "optimizer", "schedule", "mlp_act", "qk_norm", "zero_init_proj",
                       "tie_weights", "logit_softcap", "positional", "value_embeds"}
    assert (new["optimizer"], new["schedule"], new["positional"], new["max_steps"]) == ("muon", "wsd", "rope", 2400)
    with pytest.raises(ScratchLLMError, match="unknown preset 'nope'"):
        preset_config("nope")


def test_config_files(tmp_path):
    (tmp_path / "a.toml").write_text('n_layer = 2\nlr = 0.01\ndata = ["x.txt", "y.txt"]\n')
    (tmp_path / "b.json").write_text('{"train": {"n_layer": 3}}')
    (tmp_path / "c.yaml").write_text("n_layer: 2")
    (tmp_path / "d.toml").write_text("n_layer = = 2")
    assert read_config_file(tmp_path / "a.toml") == {"n_layer": 2, "lr": 0.01, "data": ["x.txt", "y.txt"]}
    assert read_config_file(tmp_path / "b.json") == {"n_layer": 3}
    with pytest.raises(ScratchLLMError, match="must end in .toml or .json"):
        read_config_file(tmp_path / "c.yaml")
    with pytest.raises(ScratchLLMError, match="invalid TOML"):
        read_config_file(tmp_path / "d.toml")
    with pytest.raises(ScratchLLMError, match="config file not found"):
        read_config_file(tmp_path / "e.toml")


def test_identity_diff():
    a = preset_config("shakespeare-char")
    assert identity_diff(a, a.updated({"lr": "1", "max_steps": "9"})) == []
    assert identity_diff(a, a.updated({"n_layer": "2"})) == ["n_layer: 4 -> 2"]


# ---------------------------------------------------------------- folder swap
def _write(tag):
    def write(folder):
        (folder / STATE).write_text(tag)
        (folder / "model.bin").write_text(tag * 3)
    return write


def test_folder_swap_replaces_whole_checkpoint(tmp_path):
    write_folder_atomically(tmp_path / "latest", _write("1"))
    write_folder_atomically(tmp_path / "latest", _write("2"))
    assert (tmp_path / "latest" / "model.bin").read_text() == "222"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


def test_crash_while_writing_keeps_previous(tmp_path):
    write_folder_atomically(tmp_path / "latest", _write("1"))

    def crashing(folder):
        (folder / STATE).write_text("2")
        raise OSError("disk full")
    with pytest.raises(OSError):
        write_folder_atomically(tmp_path / "latest", crashing)
    found = find_checkpoint(tmp_path, "latest")
    assert found == tmp_path / "latest" and (found / "model.bin").read_text() == "111"
    write_folder_atomically(tmp_path / "latest", _write("3"))        # the leftover .tmp is cleared
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]


def test_crash_between_renames_finds_old(tmp_path, monkeypatch):
    write_folder_atomically(tmp_path / "latest", _write("1"))
    real_rename = os.rename

    def rename(src, dst):
        if str(src).endswith(".tmp"):
            raise KeyboardInterrupt        # killed after latest -> latest.old
        real_rename(src, dst)
    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        write_folder_atomically(tmp_path / "latest", _write("2"))
    monkeypatch.undo()
    found = find_checkpoint(tmp_path, "latest")
    assert found == tmp_path / "latest.old" and (found / STATE).read_text() == "1"
    write_folder_atomically(tmp_path / "latest", _write("3"))
    assert find_checkpoint(tmp_path, "latest") == tmp_path / "latest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]
    assert find_checkpoint(tmp_path, "best") is None


def test_mirror_files(tmp_path):
    write_folder_atomically(tmp_path / "best", _write("1"))
    (tmp_path / "root").mkdir()
    mirror_files(tmp_path / "best", tmp_path / "root")
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["model.bin"]
    write_folder_atomically(tmp_path / "best", _write("2"))
    mirror_files(tmp_path / "best", tmp_path / "root")
    assert (tmp_path / "root" / "model.bin").read_text() == "222"


# ---------------------------------------------------------------- metrics
def test_metrics_log_and_plot(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in range(1, 6):
        log.append({"step": step, "loss": 3.0 / step, **({"val_loss": 3.1 / step} if step % 2 == 0 else {})})
    with open(log.path, "a") as f:
        f.write('{"step": 6, "lo')                     # a line cut short by a crash
    assert [r["step"] for r in log.read()] == [1, 2, 3, 4, 5]
    log.truncate_after(3)
    assert [r["step"] for r in log.read()] == [1, 2, 3]
    plot_losses(log.read(), tmp_path / "loss.png", title="test")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
