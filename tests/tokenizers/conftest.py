"""Session fixtures: our tokenizers and their oracles (tiktoken, sentencepiece)."""
import pytest
from tok_helpers import CORPUS, DATA, LLAMA2_MODEL, LLAMA2_BIN, LLAMA3


@pytest.fixture(scope="session")
def corpus() -> str:
    return CORPUS.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def gpt2():
    from scratchllm.tokenizers import load_tokenizer
    return load_tokenizer("gpt2")


@pytest.fixture(scope="session")
def gpt2_ref():
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from scratchllm.tokenizers import PATTERNS
    ranks = data_gym_to_mergeable_bpe_ranks(str(DATA / "gpt2" / "vocab.bpe"),
                                            str(DATA / "gpt2" / "encoder.json"))
    return tiktoken.Encoding("gpt2", pat_str=PATTERNS["gpt2"], mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


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
    return tiktoken.Encoding("llama3", pat_str=PATTERNS["llama3"],
                             mergeable_ranks=load_tiktoken_bpe(str(LLAMA3)),
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
