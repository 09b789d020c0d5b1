"""Session fixtures for the hostile-file tests: the reference tokenizers and their oracles."""
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"   # tests/data: the reference files
LLAMA3 = DATA / "llama3" / "tokenizer.model"
LLAMA2_MODEL = DATA / "llama2" / "tokenizer.model"
LLAMA2_BIN = DATA / "llama2" / "tokenizer.bin"


@pytest.fixture(scope="session")
def gpt2():
    from scratchllm.tokenizers import load_tokenizer
    return load_tokenizer("gpt2")


@pytest.fixture(scope="session")
def llama3():
    from scratchllm.tokenizers import load_tokenizer
    return load_tokenizer(LLAMA3)


@pytest.fixture(scope="session")
def llama3_ref():
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from scratchllm.tokenizers import PATTERNS
    from scratchllm.tokenizers.tiktoken_file import llama3_special_tokens
    return tiktoken.Encoding("llama3", pat_str=PATTERNS["llama3"], mergeable_ranks=load_tiktoken_bpe(str(LLAMA3)),
                             special_tokens=llama3_special_tokens())


@pytest.fixture(scope="session")
def sp_ref():
    import sentencepiece
    return sentencepiece.SentencePieceProcessor(model_file=str(LLAMA2_MODEL))


@pytest.fixture(scope="session")
def llama2_model():
    from scratchllm.tokenizers import load_tokenizer
    return load_tokenizer(LLAMA2_MODEL)


@pytest.fixture(scope="session")
def llama2_bin():
    from scratchllm.tokenizers import load_tokenizer
    return load_tokenizer(LLAMA2_BIN)


@pytest.fixture(scope="session", autouse=True)
def _warm_caches():
    """Build the one-time tables (Unicode classes of the split patterns) outside the measured calls."""
    from scratchllm.tokenizers.pretokenize import PATTERNS, compile_pattern
    for name in PATTERNS:
        compile_pattern(name).split("warm up ✓ 123")
