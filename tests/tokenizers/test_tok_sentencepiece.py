"""Llama 2 from tokenizer.model (protobuf parsed by hand) and tokenizer.bin (llama2.c) equals
the sentencepiece package, encode and decode."""
from hypothesis import given, settings
from hypothesis import strategies as st

from tok_helpers import unicode_text


def test_both_files_hold_the_same_vocabulary(llama2_model, llama2_bin):
    assert llama2_model.pieces == llama2_bin.pieces
    assert llama2_model.scores == llama2_bin.scores
    assert llama2_model.types == llama2_bin.types


def test_whole_corpus_equals_sentencepiece(llama2_model, llama2_bin, sp_ref, corpus):
    ref = sp_ref.encode(corpus)
    for tok in (llama2_model, llama2_bin):
        ids = tok.encode(corpus)
        assert ids == ref
        assert tok.decode(ids) == sp_ref.decode(ref) == corpus


@settings(max_examples=200, deadline=None)
@given(text=unicode_text)
def test_unicode_text_equals_sentencepiece(llama2_model, llama2_bin, sp_ref, text):
    ref = sp_ref.encode(text)
    for tok in (llama2_model, llama2_bin):
        ids = tok.encode(text)
        assert ids == ref
        assert tok.decode(ids) == sp_ref.decode(ref)
        assert tok.encode(text, bos=True, eos=True) == [1] + ref + [2]


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.one_of(st.integers(0, 31999), st.sampled_from([0, 1, 2, 13, 29871, 259]),
                              st.integers(3, 258)), max_size=12))
def test_decode_any_ids_like_sentencepiece(llama2_model, sp_ref, ids):
    assert llama2_model.decode(ids) == sp_ref.decode(ids)


def test_known_ids(llama2_bin):
    assert llama2_bin.encode("Hello world", bos=True) == [1, 15043, 3186]
    assert llama2_bin.encode("") == []
