"""The stdlib-`re` translation of the split patterns equals the reference `regex` dialect."""
import regex  # installed with tiktoken (its own pattern engine dependency); tests only
import pytest
from hypothesis import given, settings

from scratchllm.tokenizers.pretokenize import PATTERNS, compile_pattern, split_text, translate

from tok_helpers import unicode_text


@pytest.mark.parametrize("name", ["gpt2", "gpt4", "llama3"])
def test_split_matches_regex_on_corpus(name, corpus):
    assert split_text(corpus, name) == regex.findall(PATTERNS[name], corpus)


@settings(max_examples=150, deadline=None)
@given(text=unicode_text)
def test_split_matches_regex_on_unicode(text):
    for name in ("gpt2", "gpt4", "llama3"):
        assert split_text(text, name) == regex.findall(PATTERNS[name], text), name


def test_worked_example_and_none():
    assert split_text("Hello world's 123", "gpt2") == ["Hello", " world", "'s", " 123"]
    assert split_text("Hello world", None) == ["Hello world"]
    assert split_text("", None) == []


def test_custom_pattern_with_groups_and_properties():
    assert split_text("ab12 cd", r"(\p{L}+)|\p{N}") == ["ab", "1", "2", "cd"]
    assert split_text("Ab cD", r"\p{Lu}") == ["A", "D"]
    with pytest.raises(ValueError, match="invalid split pattern"):
        compile_pattern("(unclosed")
    with pytest.raises(ValueError, match="unknown Unicode property"):
        translate(r"\p{Xx}")
