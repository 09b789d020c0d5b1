"""Very long pre-tokens (>= 256 bytes: the heap merge path, ``bpe._bpe_long``) against tiktoken.

Drawn texts mix ordinary Unicode pieces with long runs that the split patterns keep in one
pre-token: letters (ASCII and multi-byte), punctuation, spaces, newlines and digits (GPT-2 keeps
a digit run whole; Llama 3 cuts it in threes), built from a short repeated fragment or drawn
character by character, so runs have both repeated and irregular structure.
"""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tok_helpers import unicode_text

LONG = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FRAGMENTS = ["a", "ab", "the", "Hello", "é", "中文", "日本語", "ß", "!", "?!", "..", "-", " ", "\n", "\t",
             "7", "123", "👍", "\u0301", "Ωμέγα"]
_letters = st.characters(categories=("Ll", "Lu", "Lo"))
long_run = st.one_of(
    st.tuples(st.sampled_from(FRAGMENTS), st.integers(256, 700)).map(lambda t: t[0] * t[1]),
    st.text(_letters, min_size=256, max_size=400),                    # one long word of drawn letters
    st.text(st.sampled_from("!@#$%^&*()_+=[]{};:,.<>/?|~`"), min_size=256, max_size=400),
)
texts = st.lists(st.one_of(unicode_text, long_run), min_size=1, max_size=4).map("".join)


def _has_long_chunk(tok, text) -> bool:
    from scratchllm.tokenizers.pretokenize import split_text
    return any(len(c.encode("utf-8")) >= 256 for c in split_text(text, tok.pattern))


@LONG
@given(text=texts)
def test_gpt2_long_pretokens_equal_tiktoken(gpt2, gpt2_ref, text):
    assert gpt2.encode(text) == gpt2_ref.encode_ordinary(text)


@LONG
@given(text=texts)
def test_llama3_long_pretokens_equal_tiktoken(llama3, llama3_ref, text):
    assert llama3.encode(text) == llama3_ref.encode_ordinary(text)


def test_the_strategy_reaches_long_pretokens(gpt2, llama3):
    """The drawn texts do hold pre-tokens of >= 256 bytes under both patterns."""
    seen = {"gpt2": 0, "llama3": 0}

    @settings(max_examples=30, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(text=texts)
    def count(text):
        seen["gpt2"] += _has_long_chunk(gpt2, text)
        seen["llama3"] += _has_long_chunk(llama3, text)

    count()
    assert seen["gpt2"] >= 10 and seen["llama3"] >= 10, seen
