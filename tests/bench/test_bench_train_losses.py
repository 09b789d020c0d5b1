"""The README's claim for ``bench train``: after the timed steps the losses agree with PyTorch's
to 5 decimals (the first loss is taken before any update, so it alone says nothing about the
backward pass or AdamW)."""
import scratchllm.bench.train as bench_train


def test_small_bench_last_loss_equals_torch_to_5_decimals(monkeypatch):
    monkeypatch.setattr(bench_train, "SETTLE_S", 0.0)                    # nothing here is timed
    monkeypatch.setattr(bench_train, "matmul_peak_gflops", lambda n: 1.0)
    # 2 + 30 steps, as the README's runs; the torch.compile peer is tested on tiny (test_bench_train_compile.py)
    r = bench_train.run_train_bench("small", warmup=2, memory=False, compiled=False)
    ours, torch = r["scratchllm"], r["torch"]
    assert r["steps"] == 30
    assert ours["loss_last"] < ours["loss_first"] - 1.0                  # the steps really trained
    assert abs(ours["loss_first"] - torch["loss_first"]) <= 1e-5
    assert abs(ours["loss_last"] - torch["loss_last"]) <= 1e-5
