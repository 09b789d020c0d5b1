"""Streaming text: pieces never split a UTF-8 character; stop strings never leak, not even in part."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scratchllm as sl
from scratchllm.serve.textstream import Detokenizer, StopMatcher

from serve_helpers import STORIES_TOK, TEXT


@pytest.fixture(scope="module")
def bpe():
    return sl.BPETokenizer.train(TEXT, 300, pattern="gpt4")


def _pieces(tok, ids, context=()):
    d = Detokenizer(tok, context)
    return [d.push(i) for i in ids] + [d.flush()]


def test_multibyte_characters_are_held_back_until_complete(bpe):
    ids = [bpe.token_to_id(bytes([b])) for b in "🙂é".encode()]     # one byte per token: f0 9f 99 82 c3 a9
    assert _pieces(bpe, ids) == ["", "", "", "🙂", "", "é", ""]


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("aé日🙂 ßö!\n")), max_size=40),
       raw=st.lists(st.integers(0, 299), max_size=30))
def test_pieces_join_to_decode_and_are_whole_characters(bpe, text, raw):
    for ids in (bpe.encode(text), raw):                             # real text, and any id sequence at all
        pieces = _pieces(bpe, ids)
        assert "".join(pieces) == bpe.decode(ids)
        whole = bpe.decode(ids)
        for p in pieces[:-1]:                                       # no piece ends inside a character:
            assert not p.endswith("\ufffd") or "\ufffd" in whole    # U+FFFD only where decode has it too


def test_sentencepiece_keeps_the_space_after_the_prompt():
    tok = sl.load_tokenizer(str(STORIES_TOK))
    prompt = tok.encode("Once upon a time", bos=True)
    reply = tok.encode("there was a cat named Tom. 🙂")                  # starts with "▁there"
    text = "".join(_pieces(tok, reply, context=prompt))
    assert text == tok.decode(prompt + reply)[len(tok.decode(prompt)):]
    assert text.startswith(" there")


@pytest.mark.parametrize("pieces,stops,want", [
    (["Hello\nUs", "er: hi"], ["\nUser:"], ("Hello", True)),
    (["ab", "c", "d"], ["cd"], ("ab", True)),
    (["abc"], ["x"], ("abc", False)),
    (["a<", "|im", "_e", "x"], ["<|im_end|>"], ("a<|im_ex", False)),
    (["one two", " three"], ["two", "one"], ("", True)),
])
def test_stop_matcher_examples(pieces, stops, want):
    m, out, stopped = StopMatcher(stops), "", False
    for p in pieces:
        text, stopped = m.push(p)
        out += text
        if stopped:
            break
    if not stopped:
        out += m.flush()
    assert (out, stopped) == want


@settings(max_examples=80, deadline=None)
@given(text=st.text(alphabet="abc\n", max_size=30), stops=st.lists(st.text(alphabet="abc\n", min_size=1, max_size=4),
                                                                      max_size=3),
       cuts=st.lists(st.integers(0, 30), max_size=6))
def test_stop_matcher_cuts_at_the_first_stop(text, stops, cuts):
    m, out, stopped, start = StopMatcher(stops), "", False, 0
    for c in sorted(set(cuts)) + [len(text)]:
        piece, stopped = m.push(text[start:c])
        start = max(start, c)
        out += piece
        if stopped:
            break
    if not stopped:
        out += m.flush()
    stops = [s for s in stops if s]
    assert not any(s in out for s in stops)                        # no stop string is ever sent
    if stopped:                                                     # the text ends right before one
        assert any(text.startswith(out + s) for s in stops)
    else:
        assert out == text and not any(s in text for s in stops)


def test_ids_past_the_tokenizer_show_as_replacement_characters(bpe):
    """A model whose vocabulary is padded past its tokenizer's (GPT-2's 50304) may sample such an id."""
    sp = sl.load_tokenizer(str(STORIES_TOK))
    for tok in (bpe, sp):
        a, b = tok.encode("Once upon")[:2]
        want = tok.decode([a]) + "\ufffd" + tok.decode([a, b])[len(tok.decode([a])):]
        assert "".join(_pieces(tok, [a, 10_000, b])) == want
