"""DESIGN.md's public contract, spelled exactly as it shows it, and the package's hygiene rules:
nothing heavy or visible happens at import time, no pickle outside the restricted .pth reader,
no test/benchmark-only package imported by the runtime package, no source file over ~500 lines."""
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import scratchllm as sl
from scratchllm.data import bundled_corpus_path
from scratchllm.models import GPT, GPTConfig

SRC = Path(sl.__file__).resolve().parent
ORACLE_ONLY = {"torch", "transformers", "tiktoken", "sentencepiece", "sklearn", "regex"}


def test_tensor_snippet_matches_torch():
    x = sl.Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert x.dtype == sl.float32 and x.shape == (2, 2)
    y = (x @ x).tanh().sum()
    y.backward()
    xt = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    yt = (xt @ xt).tanh().sum()
    yt.backward()
    assert isinstance(x.grad, sl.Tensor)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert y.item() == np.float32(yt.item())
    np.testing.assert_array_equal(x.reshape(4).numpy(), [1, 2, 3, 4])
    np.testing.assert_array_equal(x.T.numpy(), [[1, 3], [2, 4]])
    with sl.no_grad():
        z = x * 2
    assert not z.requires_grad


def test_scalar_snippet():
    a = sl.Scalar(3.0)
    (a * a + 2 * a).backward()
    assert a.grad == 8.0 and isinstance(a.grad, float)      # d/da (a^2 + 2a) = 2a + 2


def test_model_snippet(tmp_path):
    sl.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=30, block_size=16, n_layer=1, n_head=2, n_embd=8))
    model.save_pretrained(tmp_path / "m")
    model = sl.load_model(tmp_path / "m")
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    logits = model(ids)
    assert isinstance(logits, sl.Tensor) and logits.shape == (2, 3, 30) and logits.dtype == sl.float32
    out = model.generate(ids, max_new_tokens=5, temperature=0.0, top_k=None, top_p=None, seed=0)
    assert out.shape == (2, 8) and out.dtype.kind == "i"
    np.testing.assert_array_equal(out[:, :3], ids)
    seq = ids                                     # greedy = argmax of a full re-forward, step by step
    for _ in range(5):
        nxt = model(seq).numpy()[:, -1].argmax(-1)
        seq = np.concatenate([seq, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(out, seq)
    a = model.generate(ids, max_new_tokens=5, temperature=1.0, top_k=5, top_p=0.9, seed=7)
    b = model.generate(ids, max_new_tokens=5, temperature=1.0, top_k=5, top_p=0.9, seed=7)
    np.testing.assert_array_equal(a, b)           # the same seed, the same sample


def test_tokenizer_snippet():
    tok = sl.load_tokenizer("gpt2")
    assert tok.encode("Hello world") == [15496, 995] and tok.decode([15496, 995]) == "Hello world"
    text = bundled_corpus_path().read_text(encoding="utf-8")[:20_000]
    bpe = sl.BPETokenizer.train(text, 300, pattern="gpt4", special_tokens=["<|endoftext|>"])
    assert bpe.vocab_size == 301 and bpe.special_tokens == {"<|endoftext|>": 300}
    ids = bpe.encode(text + "<|endoftext|>", allowed_special="all")
    assert ids[-1] == 300 and bpe.decode(ids) == text + "<|endoftext|>"
    assert 300 not in bpe.encode("<|endoftext|>")            # ordinary text unless allowed
    import tiktoken                                           # the oracle, on the same merges
    from scratchllm.tokenizers.pretokenize import PATTERNS
    ref = tiktoken.Encoding("t", pat_str=PATTERNS["gpt4"], mergeable_ranks=bpe.ranks, special_tokens={})
    assert ids[:-1] == ref.encode_ordinary(text) and len(ids) < 0.75 * len(text)


def test_import_is_quiet_light_and_pure(tmp_path):
    code = ("import sys, scratchllm; heavy = {'matplotlib', 'tqdm', 'safetensors'} | %r; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))" % ORACLE_ONLY)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.strip() == "[]"                # no oracle, no plotting, no progress bar at import
    assert list(tmp_path.iterdir()) == []         # and no file written


def _imports(tree):
    """(module, inside_a_function) for every import statement of a parsed file."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                found.append((child.module, inner))
            visit(child, inner)
    visit(tree, False)
    return found


def test_runtime_package_imports_only_its_dependencies():
    bench = {SRC / "bench", SRC / "tokenizers" / "bench.py"}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        for module, in_function in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            top = module.split(".")[0]
            if top == "pickle":
                assert rel == Path("io/pth.py"), f"{rel} imports pickle (only the restricted .pth reader may)"
            if top in ORACLE_ONLY:   # the bench commands' peers only, imported when the command runs
                assert in_function and any(p == path or p in path.parents for p in bench), \
                    f"{rel} imports {module}"


def test_no_source_file_over_500_lines():   # "~500": a little slack for a docstring
    roots = [SRC, SRC.parents[1] / "tests", SRC.parents[1] / "examples", SRC.parents[1] / "benchmarks"]
    long = {str(p): n for root in roots for p in root.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 520}
    assert long == {}
