"""``scratchllm train`` through the CLI's main(): a run, a resume, and every bad input."""
import json
import re

import pytest

from scratchllm.cli import main

TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=8, warmup_steps=2, lr=1e-2,
            min_lr=1e-3, eval_interval=4, eval_batches=2, log_interval=1, sample_tokens=20, seed=3)
OVERRIDES = [f"{k}={v}" for k, v in TINY.items()]


def snapshot(folder):
    """Every file under ``folder`` with its bytes (to check that nothing changed)."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(*argv):
    return main(["train", "--no-progress", *map(str, argv)])


def test_train_then_resume(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert run("--out", out, "--data", corpus, "--max-steps", 4, *OVERRIDES) == 0
    assert (out / "loss.png").is_file() and (out / "metrics.jsonl").is_file()
    printed = capsys.readouterr().out
    assert "--- sample" in printed and f"scratchllm generate --model {out}" in printed
    assert json.loads((out / "latest" / "trainer_state.json").read_text())["step"] == 4
    assert run("--out", out, "--resume", "--max-steps", 6) == 0
    assert "resuming" in capsys.readouterr().out
    assert json.loads((out / "latest" / "trainer_state.json").read_text())["step"] == 6
    assert json.loads((out / "train_config.json").read_text())["max_steps"] == 6
    # the same command again (as `make demo` twice): the run is complete, nothing changes
    before = snapshot(out / "latest")
    assert run("--out", out, "--data", corpus, "--max-steps", 6, *OVERRIDES) == 0
    assert snapshot(out / "latest") == before and "--- sample" in capsys.readouterr().out


def test_ctrl_c_saves_and_stops(corpus, tmp_path, monkeypatch, capsys):
    import os
    import signal
    from scratchllm.train.trainer import Trainer
    real_step = Trainer.train_step

    def step_then_ctrl_c(self):
        loss = real_step(self)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)      # the handler only raises a flag
        return loss
    monkeypatch.setattr(Trainer, "train_step", step_then_ctrl_c)
    before = signal.getsignal(signal.SIGINT)     # default_int_handler, or SIG_IGN in a background job
    out = tmp_path / "run"
    assert run("--out", out, "--data", corpus, "--max-steps", 10, *OVERRIDES) == 130
    assert "continue with --resume" in capsys.readouterr().out
    assert json.loads((out / "latest" / "trainer_state.json").read_text())["step"] == 3
    assert signal.getsignal(signal.SIGINT) is before                  # the run's handler is gone


def test_generate_from_a_run_folder(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert run("--out", out, "--data", corpus, "--max-steps", 2, "tokenizer=bpe", "bpe_vocab_size=280",
               *OVERRIDES) == 0
    capsys.readouterr()
    assert main(["generate", "--model", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "5",
                 "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")


def test_config_file(corpus, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("\n".join([f"{k} = {json.dumps(v)}" for k, v in TINY.items() if k != "sample_tokens"]
                             + ['sample_tokens = 0', f'data = ["{corpus}"]']))
    out = tmp_path / "run"
    assert run("--out", out, "--config", cfg, "max_steps=2") == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["max_steps"] == 2 and saved["n_embd"] == 32 and saved["data"] == [str(corpus)]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One finished run (and its corpus) that the bad-input cases try to disturb."""
    from scratchllm.data import bundled_corpus_path
    folder = tmp_path_factory.mktemp("shared")
    corpus = folder / "corpus.txt"
    corpus.write_text(bundled_corpus_path().read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    out = folder / "existing"
    assert run("--out", out, "--data", corpus, "--max-steps", 2, *OVERRIDES) == 0
    return corpus, out


def _bad_inputs(tmp_path, corpus, existing):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("To be or not to be")
    (tmp_path / "bad.json").write_text('{"n_layers": 2}')
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    new = tmp_path / "new"
    return {
        "empty corpus": ([ "--out", new, "--data", tmp_path / "empty.txt"], new, "the corpus is empty"),
        "short corpus": (["--out", new, "--data", tmp_path / "short.txt", *OVERRIDES], new,
                         r"too short: 18 tokens .* block_size \+ 1 = 17"),
        "missing file": (["--out", new, "--data", tmp_path / "nope.txt"], new, "data file not found: .*nope.txt"),
        "unknown preset": (["--out", new, "--preset", "shakespeare-word"], new,
                           "unknown preset 'shakespeare-word'; choose one of: shakespeare-char"),
        "unknown key": (["--out", new, "n_layers=2"], new, "unknown config key 'n_layers'"),
        "bad value": (["--out", new, "lr=fast"], new, "'lr' expects float, got 'fast'"),
        "unknown key in file": (["--out", new, "--config", tmp_path / "bad.json"], new,
                                "bad.json / command line: unknown config key 'n_layers'"),
        "missing config file": (["--out", new, "--config", tmp_path / "nope.toml"], new, "config file not found"),
        "missing init_from": (["--out", new, "--init-from", tmp_path / "no-model", "--data", corpus], new,
                              "no-model"),
        "resume other architecture": (["--out", existing, "--resume", "--preset", "llama-tiny"], existing,
                                      "holds a run of preset shakespeare-char, not llama-tiny"),
        "resume with other shape": (["--out", existing, "--resume", "n_layer=2"], existing,
                                    r"holds a different run .*n_layer: 1 -> 2"),
        "different run in folder": (["--out", existing, "--data", corpus, *OVERRIDES, "n_embd=64"], existing,
                                    r"holds a different run .*n_embd: 32 -> 64"),
        "same shape, other settings": (["--out", existing, "--data", corpus, *OVERRIDES, "lr=0.5"], existing,
                                       "already holds a run with other settings \\(.*lr"),
        "folder of other files": (["--out", tmp_path / "stuff"], tmp_path / "stuff", "not empty and holds no"),
        "nothing to resume": (["--out", new, "--resume"], new, "nothing to resume"),
    }


CASES = ["empty corpus", "short corpus", "missing file", "unknown preset", "unknown key", "bad value",
         "unknown key in file", "missing config file", "missing init_from", "resume other architecture",
         "resume with other shape", "different run in folder", "same shape, other settings",
         "folder of other files", "nothing to resume"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_one_clear_message(case, shared, tmp_path, capsys):
    argv, folder, message = _bad_inputs(tmp_path, *shared)[case]
    capsys.readouterr()
    before = snapshot(folder)
    assert run(*argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("scratchllm train: error: ")
    assert re.search(message, err), err
    assert snapshot(folder) == before             # nothing written, nothing overwritten
