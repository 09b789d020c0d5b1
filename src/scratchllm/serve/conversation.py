"""Chat prompts: a conversation -> prompt ids with the model's chat template, within its context.

The templates themselves live in ``finetune/chat_template.py`` (the fine-tuning code renders
training data with the same ones); this module only picks one and applies it:

    >>> p = Prompter(get_template("chatml"), tok)                                  # doctest: +SKIP
    >>> p.encode([{"role": "user", "content": "Hi"}])                             # doctest: +SKIP
    [ids of "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"]

A reply ends at the template's end-of-turn token (``<|im_end|>``, ``<|eot_id|>``) when the
tokenizer knows it as one id, else at its text (``stop_strings``); the tokenizer's
end-of-text (and begin-of-text: a new document) ids end it too. A tokenizer without the
template's special tokens (a base model) gets the rendered text encoded as plain text.

The context policy (``fit``): the oldest turns are dropped first, never the system prompt, until
the prompt leaves ``room`` tokens for the reply.
"""
from __future__ import annotations

import os

from ..errors import ScratchLLMError
from ..finetune.chat_template import encode_chat, encode_text, get_template, missing_special_tokens


def choose_template(name, model_path, tokenizer):
    """The template: ``name`` if given (a built-in name or an HF folder / tokenizer_config.json);
    else the HF ``chat_template`` beside the model; else ChatML or Llama 3 when the tokenizer has
    their special tokens; else ChatML rendered as plain text."""
    if name:
        return get_template(name)
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    if os.path.isfile(os.path.join(folder, "chat_template.jinja")) or _has_hf_template(folder):
        return get_template(folder)
    specials = special_tokens(tokenizer)
    if "<|start_header_id|>" in specials and "<|eot_id|>" in specials:
        return get_template("llama3")
    return get_template("chatml")


def _has_hf_template(folder: str) -> bool:
    from ..jsonio import read_json
    path = os.path.join(folder, "tokenizer_config.json")
    try:
        return isinstance(read_json(path, "tokenizer config").get("chat_template"), (str, list))
    except (OSError, ValueError, ScratchLLMError):
        return False


def special_tokens(tokenizer) -> dict:
    """Special-token text -> id (empty for tokenizers without any)."""
    return dict(getattr(tokenizer, "special_tokens", None) or {})


def end_ids(tokenizer) -> set:
    """The tokenizer's end-of-text and begin-of-text ids: either ends a generated text."""
    return {int(i) for i in (getattr(tokenizer, "eos_id", None), getattr(tokenizer, "bos_id", None))
            if i is not None and int(i) >= 0}


class Prompter:
    """Messages -> prompt ids for one template and tokenizer; ``stop_ids``/``stop_strings`` end a reply.

    ``bos_id``: an id to put first when the rendered text does not start with it (Llama models
    trained with SentencePiece's <s>); None adds nothing.
    """

    def __init__(self, template, tokenizer, bos_id=None):
        self.template, self.tok, self.bos_id = template, tokenizer, bos_id
        specials = special_tokens(tokenizer)
        self.native = not missing_special_tokens(template, tokenizer)
        self.stop_ids = frozenset({int(specials[s]) for s in template.stop_strings if s in specials}
                                  | end_ids(tokenizer))
        self.stop_strings = tuple(s for s in template.stop_strings if s not in specials)

    def encode(self, messages) -> list:
        if self.native:
            ids = encode_chat(self.template, self.tok, messages, add_generation_prompt=True)[0]
        else:
            ids = encode_text(self.tok, self.template.render(messages, add_generation_prompt=True), ())
        if self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [int(self.bos_id)] + list(ids)
        return [int(i) for i in ids]

    def fit(self, messages, context: int, room: int):
        """Drop the oldest turns (never a leading system message) until the prompt plus ``room``
        reply tokens fit in ``context``. -> (kept messages, prompt ids); raises when even the
        system prompt and the last message alone do not fit."""
        msgs = list(messages)
        while True:
            ids = self.encode(msgs)
            if len(ids) + room <= context:
                return msgs, ids
            first = 1 if msgs and msgs[0]["role"] == "system" else 0
            if len(msgs) - first <= 1:
                raise ScratchLLMError(f"the message does not fit in the model's context: {len(ids)} prompt "
                                      f"tokens + {room} for the reply > {context}")
            del msgs[first]
            while len(msgs) - first > 1 and msgs[first]["role"] != "user":
                del msgs[first]                        # a turn starts with the user's message
