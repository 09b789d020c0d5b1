"""Chat templates render exactly like transformers' apply_chat_template (tokenize=False)."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from finetune_helpers import make_hf_tokenizer
from scratchllm.finetune.chat_template import (CHATML_JINJA, LLAMA3_JINJA, encode_chat,
                                               get_template, render_segments)

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": " 4 \n"}],
    [{"role": "user", "content": "a\n\nb"}, {"role": "assistant", "content": "c"},
     {"role": "user", "content": "  d"}, {"role": "assistant", "content": "e  "}],
]
text = st.text(alphabet=st.sampled_from(list("ab \n{}%#<|>é")), max_size=12)
conversation = st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), text),
                        min_size=1, max_size=5).map(
    lambda ms: [{"role": r, "content": c} for r, c in ms])


@pytest.mark.parametrize("name,jinja", [("llama3", LLAMA3_JINJA), ("chatml", CHATML_JINJA)])
def test_builtin_matches_transformers(hf_tokenizer_factory, name, jinja):
    hf, folder = hf_tokenizer_factory(jinja)
    ours = get_template(name)
    from_folder = get_template(str(folder))     # the same Jinja source through our HF path
    for msgs in CONVERSATIONS:
        for gen in (False, True):
            want = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            assert ours.render(msgs, add_generation_prompt=gen) == want
            assert from_folder.render(msgs, add_generation_prompt=gen) == want


@settings(max_examples=25, deadline=None)
@given(conversation)
def test_builtin_matches_transformers_random(tmp_path_factory, msgs):
    for name, jinja in (("llama3", LLAMA3_JINJA), ("chatml", CHATML_JINJA)):
        hf, _ = _cached(tmp_path_factory, name, jinja, make_hf_tokenizer)
        for gen in (False, True):
            want = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            assert get_template(name).render(msgs, add_generation_prompt=gen) == want


_CACHE = {}


def _cached(factory, name, jinja, make):
    if name not in _CACHE:
        _CACHE[name] = make(factory.mktemp(name), jinja)
    return _CACHE[name]


SYSTEM_JINJA = (  # trim_blocks/lstrip_blocks, raise_exception, loop controls, tojson, generation
    "{% if messages[0]['role'] != 'system' %}{{ raise_exception('need a system message') }}"
    "{% endif %}\n"
    "{{ bos_token }}{% for m in messages %}\n"
    "    {% if m['role'] == 'assistant' %}{% generation %}A: {{ m['content'] }}{{ eos_token }}"
    "{% endgeneration %}\n"
    "    {% else %}{{ m['role'] | upper }}: {{ m['content'] | tojson }}\n"
    "    {% endif %}\n"
    "{% endfor %}\n"
    "{% if add_generation_prompt %}A:{% endif %}")


def test_hf_template_matches_transformers(hf_tokenizer_factory, tmp_path):
    hf, folder = hf_tokenizer_factory(SYSTEM_JINJA)
    t = get_template(str(folder / "tokenizer_config.json"))
    msgs = [{"role": "system", "content": "sé \"q\""}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"}]
    for gen in (False, True):
        assert t.render(msgs, add_generation_prompt=gen) == hf.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=gen)
    with pytest.raises(ValueError, match="need a system message"):
        t.render(msgs[1:])
    config = json.loads((folder / "tokenizer_config.json").read_text())
    if "chat_template" not in config:   # newer transformers write chat_template.jinja
        config["chat_template"] = (folder / "chat_template.jinja").read_text()
    assert get_template(config).render(msgs) == t.render(msgs)
    assert "<|eot_id|>" in t.special_tokens and t.eos_token == "<|eot_id|>"


def test_sandbox_blocks_attribute_escape(tmp_path):
    evil = "{{ messages.__class__.__mro__ }}"
    t = get_template({"chat_template": evil})
    with pytest.raises(Exception):
        t.render([{"role": "user", "content": "x"}])


@pytest.mark.parametrize("name", ["alpaca", "chatml", "llama3"])
def test_segments_cover_render_and_mark_replies(name):
    t = get_template(name)
    msgs = CONVERSATIONS[2]
    segs = render_segments(t, msgs)
    assert "".join(s for s, _ in segs) == t.render(msgs)
    replies = [s for s, a in segs if a]
    assert len(replies) == 2 and replies[0].startswith("c") and replies[1].startswith("e")
    assert all(r.rstrip("\n").endswith(t.eos_token) for r in replies)


def test_alpaca_matches_raschka_format():
    t = get_template("alpaca")
    rec = {"instruction": "Add.", "input": "2 and 3", "output": "5"}
    assert t.render(t.messages_from_record(rec)) == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n2 and 3"
        "\n\n### Response:\n5<|endoftext|>")


def test_encode_chat_mask_and_missing_tokens():
    from scratchllm.tokenizers import load_tokenizer
    tok = load_tokenizer("gpt2")
    t = get_template("alpaca")
    ids, mask = encode_chat(t, tok, [{"role": "user", "content": "Hi"},
                                     {"role": "assistant", "content": "Hello"}])
    assert len(ids) == len(mask) and ids[-1] == 50256
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "Hello<|endoftext|>"
    with pytest.raises(ValueError, match="needs special tokens the tokenizer lacks"):
        encode_chat(get_template("chatml"), tok, [{"role": "user", "content": "Hi"}])


@pytest.mark.parametrize("bad,msg", [
    ([], "non-empty"), ([{"role": "bot", "content": "x"}], "role 'bot'"),
    ([{"role": "user"}], "needs 'role' and 'content'"), ("x", "non-empty list")])
def test_bad_messages_one_clear_error(bad, msg):
    with pytest.raises(ValueError, match=msg):
        get_template("chatml").render(bad)
