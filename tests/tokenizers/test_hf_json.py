"""HF tokenizer.json: token-exact against the `tokenizers` library (and transformers' AutoTokenizer)
for byte-level BPEs (GPT-2-like, Llama-3-like) and SentencePiece-style BPEs with byte fallback
(Llama 2-like, two layouts), on Shakespeare and on hypothesis Unicode text."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from scratchllm.tokenizers import load_tokenizer
from scratchllm.tokenizers.hf_json import HFTokenizer

from hf_tok_helpers import BUILDERS, CHAT_TEMPLATE
from tok_helpers import CORPUS, unicode_text

KINDS = list(BUILDERS)
EDGE = ["", " ", "  leading spaces", "trailing  ", "Hello  world\n\n  x", "\t\ttabs\r\n", "日本語の text 👍🏽",
        "<s>hi</s> <s>", "a<|eot_id|>b<|end_of_text|>c<|endoftext|>", "<|begin_of_text|> x", "1234567 89 ١٢٣ 一二",
        "\u00a0 x\u3000y\u2028z", "it's THEY'LL 'Re", "é e\u0301 ß İ ſ K", "\x00\x1c\u200b\ufeff", "▁▁x ▁", "<0x41>"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """kind -> (HF's Tokenizer, ours read back by load_tokenizer from a folder HF wrote)."""
    out = {}
    for kind, build in BUILDERS.items():
        hf = build()
        folder = tmp_path_factory.mktemp(kind)
        hf.save(str(folder / "tokenizer.json"))
        bos, eos = ("<|begin_of_text|>", "<|eot_id|>") if kind == "llama3" else \
                   ("<|endoftext|>", "<|endoftext|>") if kind in ("gpt2", "smollm") else ("<s>", "</s>")
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
                  "chat_template": CHAT_TEMPLATE}
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        ours = load_tokenizer(folder)
        assert isinstance(ours, HFTokenizer)
        out[kind] = (hf, ours, folder)
    return out


def _same(hf, ours, text):
    assert ours.encode(text) == hf.encode(text, add_special_tokens=False).ids, text
    ids = hf.encode(text).ids
    assert ours.encode(text, add_special_tokens=True) == ids, text
    assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False), text
    assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True), text


@pytest.mark.parametrize("kind", KINDS)
def test_shakespeare_and_edge_cases_equal_hf(pairs, kind):
    hf, ours, _ = pairs[kind]
    corpus = CORPUS.read_text(encoding="utf-8")
    for text in [corpus[100_000:130_000], corpus[500_000:503_000]] + EDGE:
        _same(hf, ours, text)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None)
@given(text=unicode_text)
def test_unicode_text_equal_hf(pairs, kind, text):
    hf, ours, _ = pairs[kind]
    _same(hf, ours, text)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_decode_any_ids_equal_hf(pairs, kind, data):
    hf, ours, _ = pairs[kind]
    ids = data.draw(st.lists(st.integers(0, ours.vocab_size - 1), max_size=30))
    assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False)
    assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("kind", ["llama3", "sp-prepend"])
def test_autotokenizer_agrees_and_config_is_read(pairs, kind):
    from transformers import AutoTokenizer
    _, ours, folder = pairs[kind]
    auto = AutoTokenizer.from_pretrained(str(folder))
    text = CORPUS.read_text(encoding="utf-8")[:3000] + " 日本語 👍🏽 <s>"
    assert ours.encode(text, add_special_tokens=True) == auto(text)["input_ids"]
    assert ours.encode(text) == auto(text, add_special_tokens=False)["input_ids"]
    assert (ours.bos_id, ours.eos_id) == (auto.bos_token_id, auto.eos_token_id)
    assert ours.chat_template == auto.chat_template == CHAT_TEMPLATE
    assert ours.vocab_size == len(auto)


def test_allowed_special_and_bos_eos(pairs):
    hf, ours, _ = pairs["llama3"]
    text = "a<|eot_id|>b"
    assert ours.encode(text) == hf.encode(text, add_special_tokens=False).ids
    eot = ours.special_tokens["<|eot_id|>"]
    assert eot in ours.encode(text, allowed_special={"<|eot_id|>"})
    assert eot not in ours.encode(text, allowed_special="none")
    assert ours.encode(text, bos=True, eos=True) == [ours.bos_id] + ours.encode(text) + [ours.eos_id]


def test_vocab_json_and_merges_txt_folder(pairs, tmp_path):
    """HF's other layout: vocab.json + merges.txt (GPT-2, and what tokenizers' model.save writes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    hf_trained, _, _ = pairs["gpt2"]
    hf_trained.model.save(str(tmp_path))
    ours = load_tokenizer(tmp_path)
    hf = Tokenizer(models.BPE.from_file(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt")))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens(["<|endoftext|>"])
    corpus = CORPUS.read_text(encoding="utf-8")
    for text in [corpus[200_000:220_000]] + EDGE:
        _same(hf, ours, text)


def test_gpt2_vocab_json_folder_is_read_not_the_bundled_gpt2(tmp_path, gpt2, gpt2_ref, corpus):
    from tok_helpers import DATA
    (tmp_path / "vocab.json").write_bytes((DATA / "gpt2" / "encoder.json").read_bytes())
    (tmp_path / "merges.txt").write_bytes((DATA / "gpt2" / "vocab.bpe").read_bytes())
    ours = load_tokenizer(tmp_path)
    assert isinstance(ours, HFTokenizer) and ours.name == str(tmp_path / "vocab.json")
    text = corpus[:20_000]
    assert ours.encode(text) == gpt2_ref.encode_ordinary(text) == gpt2.encode(text)
    assert ours.encode("a<|endoftext|>") == [64, 50256]        # HF matches added tokens in text
    assert ours.bos_id == ours.eos_id == 50256
    # a folder with only part of the files is not silently taken for the bundled GPT-2
    (tmp_path / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match="folder holds no tokenizer"):
        load_tokenizer(tmp_path)


def _spec(pairs, **changes):
    spec = json.loads(pairs["gpt2"][0].to_str())
    for path, value in changes.items():
        node, *keys = path.split("__")
        target = spec
        for k in [node] + keys[:-1]:
            target = target[k]
        if keys:
            target[keys[-1]] = value
        else:
            spec[node] = value
    return spec


@pytest.mark.parametrize("changes, message", [
    ({"model": {"type": "WordPiece", "vocab": {"a": 0}, "unk_token": "a"}},
     "model.type is 'WordPiece'; only BPE tokenizers are read"),
    ({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}, "model.type is 'Unigram'"),
    ({"normalizer": {"type": "BertNormalizer"}}, "normalizer.type: type 'BertNormalizer' is not supported"),
    ({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}]}},
     "pre_tokenizer.pretokenizers[0].type: type 'Whitespace' is not supported"),
    ({"decoder": {"type": "WordPiece"}}, "decoder.type: type 'WordPiece' is not supported"),
    ({"model__dropout": 0.1}, "model.dropout: 0.1; BPE dropout"),
    ({"model__merges": [["Ġ", "notatoken"]]}, "model.merges[0]: 'notatoken'"),
])
def test_other_kinds_are_refused_naming_file_and_field(pairs, tmp_path, changes, message):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(_spec(pairs, **changes)))
    with pytest.raises(ValueError) as err:
        load_tokenizer(path)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


def test_chat_template_forms(pairs, tmp_path):
    """tokenizer_config.json's chat_template as a named list, or a chat_template.jinja file."""
    pairs["sp-prepend"][0].save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}))
    assert load_tokenizer(tmp_path).chat_template == "D"
    (tmp_path / "tokenizer_config.json").write_text("{}")
    (tmp_path / "chat_template.jinja").write_text("J")
    tok = load_tokenizer(tmp_path)
    assert tok.chat_template == "J" and (tok.bos_id, tok.eos_id) == (1, 2)   # the template, </s>


@pytest.mark.parametrize("kind", KINDS)
def test_added_tokens_flags_equal_hf(pairs, kind):
    """Non-special added tokens (matched in the normalized text), single_word, lstrip/rstrip."""
    from tokenizers import AddedToken, Tokenizer
    hf = Tokenizer.from_str(pairs[kind][0].to_str())
    hf.add_tokens(["friend", "my fr", AddedToken("world", single_word=True)])
    hf.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True), AddedToken("<|x|>", single_word=True)])
    ours = HFTokenizer(json.loads(hf.to_str()), kind)
    for text in ("hello world, my friend <mask> here  <mask>x and <|x|>  yo", "friendly friend", " <mask>",
                 "a\u00a0<mask>\u3000b", "worldly world", "x<mask>", "a <|x|>b <|x|> c"):
        _same(hf, ours, text)
