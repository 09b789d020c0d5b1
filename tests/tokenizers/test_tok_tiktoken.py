"""GPT-2 and Llama 3 encodings equal tiktoken's, token for token; Meta's Llama 3 example."""
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.tokenizers import Llama3ChatFormat

from tok_helpers import unicode_text


def test_gpt2_whole_corpus(gpt2, gpt2_ref, corpus):
    ids = gpt2.encode(corpus)
    assert ids == gpt2_ref.encode_ordinary(corpus)
    assert gpt2.decode(ids) == corpus


def test_llama3_whole_corpus(llama3, llama3_ref, corpus):
    ids = llama3.encode(corpus)
    assert ids == llama3_ref.encode_ordinary(corpus)
    assert llama3.decode(ids) == corpus


@settings(max_examples=200, deadline=None)
@given(text=unicode_text)
def test_unicode_text_equals_tiktoken(gpt2, gpt2_ref, llama3, llama3_ref, text):
    for ours, ref in ((gpt2, gpt2_ref), (llama3, llama3_ref)):
        ids = ours.encode(text)
        assert ids == ref.encode_ordinary(text)
        assert ours.decode(ids) == text
        assert ours.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")


@settings(max_examples=100, deadline=None)
@given(ids=st.lists(st.integers(0, 128255), max_size=20))
def test_decode_any_ids_like_tiktoken(llama3, llama3_ref, ids):
    assert llama3.decode(ids) == llama3_ref.decode(ids)  # invalid UTF-8 -> U+FFFD, no error


def test_meta_llama3_example(llama3):
    ids = llama3.encode("This is a test sentence.", bos=True, eos=True)
    assert ids == [128000, 2028, 374, 264, 1296, 11914, 13, 128001]
    assert llama3.decode(ids) == "<|begin_of_text|>This is a test sentence.<|end_of_text|>"


def test_llama3_special_tokens_and_chat_format(llama3, llama3_ref):
    sp = llama3.special_tokens
    assert len(sp) == 256 and sp["<|eot_id|>"] == 128009 and sp["<|start_header_id|>"] == 128006
    assert sp["<|reserved_special_token_250|>"] == 128255
    text = "<|begin_of_text|>hi<|eot_id|>"
    assert llama3.encode(text) == llama3_ref.encode_ordinary(text)  # ordinary text by default
    assert llama3.encode(text, allowed_special={"<|eot_id|>"}) == llama3_ref.encode(
        text, allowed_special={"<|eot_id|>"}, disallowed_special=())
    chat = Llama3ChatFormat(llama3)
    dialog = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hi! "}]
    expected_text = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief."
                     "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert chat.encode_dialog_prompt(dialog) == llama3_ref.encode(expected_text,
                                                                  allowed_special="all")
    assert chat.stop_tokens == [128001, 128009]


def test_gpt2_known_ids_and_endoftext(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode("<|endoftext|>", allowed_special="all") == [50256]
    assert gpt2.encode("<|endoftext|>") != [50256]
    assert gpt2.encode("a", bos=True, eos=True) == [50256, 64, 50256]


def test_long_chunks_use_the_heap_path_and_still_match(gpt2, gpt2_ref):
    import random
    rng = random.Random(0)
    for alphabet in ("ab", "etaoinshrdlu", "é中😀"):
        word = "".join(rng.choice(alphabet) for _ in range(3000))  # one pre-token chunk
        text = f"{word} {word[:700]}"
        assert gpt2.encode(text) == gpt2_ref.encode_ordinary(text)
