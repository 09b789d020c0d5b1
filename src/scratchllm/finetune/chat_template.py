"""Chat templates: turn a conversation into the text (and token ids) a model is trained on.

A conversation is a list of messages ``{"role": "system"|"user"|"assistant", "content": str}``.
A :class:`ChatTemplate` renders it into one string; :func:`encode_chat` turns it into token ids
plus an assistant mask (True on the tokens the supervised fine-tuning loss is computed on).

Named templates (:func:`get_template`):

``"alpaca"``  Alpaca/Raschka prompt format; a reply ends with the eos token (``<|endoftext|>``)::

    Below is an instruction that describes a task. Write a response that appropriately completes the request.

    ### Instruction:
    Name a colour.

    ### Response:
    Blue.<|endoftext|>

``"chatml"``  ``<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello<|im_end|>\\n``
``"llama3"``  ``<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\nHi<|eot_id|>...``
              (Meta Llama 3 Instruct: each content is stripped, as its official template does)
``"hf"``      the Jinja2 ``chat_template`` of an HF folder's tokenizer_config.json (or its
              chat_template.jinja): pass the folder, the json file (either may be written
              ``"hf:PATH"``), or the parsed dict to :func:`get_template`. Rendered like transformers' ``apply_chat_template``: a
              sandboxed Jinja2 environment (ImmutableSandboxedEnvironment, trim_blocks,
              lstrip_blocks, loopcontrols), ``raise_exception``, ``tojson``, ``strftime_now``,
              the tokenizer's ``bos_token``/``eos_token``/... and ``add_generation_prompt``.

The three built-in templates are plain Python (no Jinja2 needed); they render exactly as the
official Jinja templates do in transformers (tests/finetune/test_chat_template.py checks it).

Public API::

    t = get_template("chatml")                  # or "alpaca", "llama3", a folder, a config dict
    t.render(messages, add_generation_prompt=False) -> str
    t.special_tokens      # token texts the tokenizer must know as single ids ({"<|im_start|>", ...})
    t.stop_strings        # text that ends a generated reply ("<|im_end|>", ...)
    t.bos_token, t.eos_token
    t.messages_from_record({"instruction": ..., "input": ..., "output": ...}) -> messages
    encode_chat(t, tokenizer, messages) -> (ids, mask)   # mask[i] True: assistant token
    render_segments(t, messages) -> [(text, is_assistant), ...]
    check_messages(messages)   # raises ValueError with one clear line

    >>> t = get_template("chatml")
    >>> t.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'

The assistant mask is found by rendering prefixes: for assistant message i, the text of
``messages[:i]`` with the generation prompt is a prefix of the text of ``messages[:i+1]``; what
follows it (the reply and its end-of-turn marker) is the assistant's. This works for any
template, HF ones included. Each segment is tokenized on its own (special tokens split out
first), so no BPE merge crosses a role boundary.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

ROLES = ("system", "user", "assistant")
ALPACA_PREAMBLE = ("Below is an instruction that describes a task. "
                   "Write a response that appropriately completes the request.")

# Official Jinja sources of the two ecosystem templates the built-ins reproduce (for reference and
# for the tests; the built-ins below do not use Jinja).
LLAMA3_JINJA = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}")
CHATML_JINJA = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}")


@dataclass
class ChatTemplate:
    """A named way to render a conversation. ``render_fn(messages, add_generation_prompt)``."""
    name: str
    render_fn: Callable[[list, bool], str]
    special_tokens: tuple = ()          # texts that must be single tokens
    stop_strings: tuple = ()            # a generated reply ends at the first of these
    bos_token: str | None = None
    eos_token: str | None = None
    input_joiner: str = "\n\n"          # joins an Alpaca record's instruction and input
    extra: dict = field(default_factory=dict)

    def render(self, messages, add_generation_prompt: bool = False) -> str:
        check_messages(messages, need_assistant=False)
        return self.render_fn(list(messages), bool(add_generation_prompt))

    def messages_from_record(self, record: dict, where: str = "record") -> list:
        """An Alpaca record (instruction, input, output) or chat record (messages) -> messages."""
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        if "messages" in record:
            msgs = record["messages"]
            check_messages(msgs, where=where)
            return [{"role": m["role"], "content": m["content"]} for m in msgs]
        for key in ("instruction", "output"):
            if key not in record:
                raise ValueError(f"{where}: missing field {key!r} (need instruction/input/output "
                                 "or messages)")
            if not isinstance(record[key], str):
                raise ValueError(f"{where}: field {key!r} must be a string")
        inp = record.get("input", "") or ""
        if not isinstance(inp, str):
            raise ValueError(f"{where}: field 'input' must be a string")
        if not record["instruction"].strip():
            raise ValueError(f"{where}: empty 'instruction'")
        user = record["instruction"] + (self.input_joiner + inp if inp else "")
        return [{"role": "user", "content": user},
                {"role": "assistant", "content": record["output"]}]

    def __repr__(self) -> str:
        return f"ChatTemplate({self.name!r})"


def check_messages(messages, where: str = "messages", need_assistant: bool = False) -> None:
    """Raise one clear ValueError when ``messages`` is not a list of role/content dicts."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"{where}: 'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"{where}: message {i} needs 'role' and 'content'")
        if m["role"] not in ROLES:
            raise ValueError(f"{where}: message {i} has role {m['role']!r}, not one of {ROLES}")
        if not isinstance(m["content"], str):
            raise ValueError(f"{where}: message {i} content must be a string")
    if need_assistant and not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{where}: no assistant message to learn from")


# --- built-in templates ----------------------------------------------------------------------

def _render_chatml(messages, add_generation_prompt):
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def _render_llama3(messages, add_generation_prompt):
    out = "<|begin_of_text|>" + "".join(
        f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>"
        for m in messages)
    return out + ("<|start_header_id|>assistant<|end_header_id|>\n\n"
                  if add_generation_prompt else "")


def _render_alpaca(messages, add_generation_prompt, eos="<|endoftext|>"):
    out = ALPACA_PREAMBLE
    if messages and messages[0]["role"] == "system":
        out, messages = messages[0]["content"], messages[1:]
    for m in messages:
        if m["role"] == "user":
            out += f"\n\n### Instruction:\n{m['content']}"
        elif m["role"] == "assistant":
            out += f"\n\n### Response:\n{m['content']}{eos}"
        else:
            raise ValueError("alpaca template: a system message may only come first")
    if add_generation_prompt:
        out += "\n\n### Response:\n"
    return out


_BUILTIN = {
    "chatml": lambda: ChatTemplate("chatml", _render_chatml, ("<|im_start|>", "<|im_end|>"),
                                   ("<|im_end|>",), None, "<|im_end|>"),
    "llama3": lambda: ChatTemplate("llama3", _render_llama3,
                                   ("<|begin_of_text|>", "<|start_header_id|>",
                                    "<|end_header_id|>", "<|eot_id|>"),
                                   ("<|eot_id|>",), "<|begin_of_text|>", "<|eot_id|>"),
    "alpaca": lambda: ChatTemplate("alpaca", _render_alpaca, ("<|endoftext|>",),
                                   ("<|endoftext|>", "\n\n### Instruction:"), None,
                                   "<|endoftext|>", input_joiner="\n\n### Input:\n"),
}
TEMPLATE_NAMES = tuple(_BUILTIN) + ("hf",)


# --- HF (Jinja2) templates -------------------------------------------------------------------

def _jinja_env():
    try:
        import jinja2
        from jinja2.ext import Extension
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:  # pragma: no cover - jinja2 is a dependency
        raise ImportError("HF chat templates need jinja2 (pip install jinja2)") from e

    class GenerationBlock(Extension):
        """``{% generation %}...{% endgeneration %}`` renders its body (HF's assistant marker)."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _token_text(v):
    """tokenizer_config.json stores a token as a string or as {"content": ...}."""
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None


def hf_template(source: str, config: dict | None = None, name: str = "hf") -> ChatTemplate:
    """A ChatTemplate from a Jinja2 chat_template string; ``config`` gives bos/eos/... tokens."""
    import jinja2
    config = config or {}
    try:
        compiled = _jinja_env().from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ValueError(f"{name}: chat_template is not valid Jinja2: {e}") from None
    toks = {k: _token_text(config.get(k)) for k in
            ("bos_token", "eos_token", "unk_token", "pad_token")}
    toks = {k: v for k, v in toks.items() if v is not None}

    def render(messages, add_generation_prompt):
        try:
            return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                   **toks)
        except jinja2.exceptions.TemplateError as e:
            raise ValueError(f"{name}: chat_template raised: {e}") from None

    special = set()
    for entry in (config.get("added_tokens_decoder") or {}).values():
        if isinstance(entry, dict) and entry.get("special") and _token_text(entry):
            special.add(_token_text(entry))
    special.update(v for k, v in toks.items() if k in ("bos_token", "eos_token"))
    special = tuple(sorted(s for s in special if s in source or s in toks.values()))
    eos = toks.get("eos_token")
    stops = tuple(s for s in ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>")
                  if s in source) or ((eos,) if eos else ())
    return ChatTemplate(name, render, special, stops, toks.get("bos_token"), eos,
                        extra={"source": source})


def _read_hf_config(path: str) -> tuple[str, dict]:
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    cfg_path = os.path.join(path, "tokenizer_config.json") if os.path.isdir(path) else path
    config = {}
    if os.path.isfile(cfg_path):
        from ..jsonio import read_json
        config = read_json(cfg_path, "tokenizer config")          # depth-limited, one clear error
    source = config.get("chat_template")
    if isinstance(source, list):  # [{"name": "default", "template": ...}, ...]
        named = {d.get("name"): d.get("template") for d in source if isinstance(d, dict)}
        source = named.get("default")
    jinja_file = os.path.join(folder, "chat_template.jinja")
    if source is None and os.path.isfile(jinja_file):
        with open(jinja_file, encoding="utf-8") as f:
            source = f.read()
    if not isinstance(source, str) or not source:
        raise ValueError(f"{cfg_path}: no 'chat_template' in the tokenizer config")
    return source, config


def get_template(spec) -> ChatTemplate:
    """A template by name ("alpaca", "chatml", "llama3"), HF folder / tokenizer_config.json path
    (optionally written "hf:PATH"), parsed tokenizer_config dict, or an existing ChatTemplate
    (returned as is)."""
    if isinstance(spec, ChatTemplate):
        return spec
    if isinstance(spec, dict):
        source = spec.get("chat_template")
        if not isinstance(source, str):
            raise ValueError("tokenizer config: no 'chat_template' string")
        return hf_template(source, spec)
    spec = os.fspath(spec)
    if spec in _BUILTIN:
        return _BUILTIN[spec]()
    if spec.startswith("hf:"):                      # "hf:PATH", explicit
        spec = spec[3:]
        if not os.path.exists(spec):
            raise ValueError(f"chat template: {spec} not found (hf:FOLDER or hf:tokenizer_config.json)")
    if os.path.exists(spec):
        source, config = _read_hf_config(spec)
        return hf_template(source, config, name=f"hf:{spec}")
    raise ValueError(f"unknown chat template {spec!r}: use one of {', '.join(_BUILTIN)}, "
                     "an HF folder or a tokenizer_config.json")


# --- rendering to segments and token ids -----------------------------------------------------

def render_segments(template: ChatTemplate, messages) -> list:
    """[(text, is_assistant), ...] whose concatenation is ``template.render(messages)``."""
    check_messages(messages)
    full = template.render(messages)
    segments, pos = [], 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = template.render(messages[:i], add_generation_prompt=True) if i else \
            template.render_fn([], True)
        upto = template.render(messages[:i + 1])
        if not upto.startswith(prefix) or not full.startswith(upto) or len(prefix) < pos:
            raise ValueError(f"{template.name}: cannot locate assistant message {i} in the "
                             "rendered text (the template is not prefix-stable)")
        if len(prefix) > pos:
            segments.append((full[pos:len(prefix)], False))
        segments.append((full[len(prefix):len(upto)], True))
        pos = len(upto)
    if pos < len(full):
        segments.append((full[pos:], False))
    return segments


def _special_ids(tokenizer) -> dict:
    """Special-token text -> id of a scratchllm tokenizer (its ``special_tokens`` dict)."""
    return dict(getattr(tokenizer, "special_tokens", None) or {})


def missing_special_tokens(template: ChatTemplate, tokenizer) -> list:
    """The template's special tokens the tokenizer cannot encode as one id."""
    have = _special_ids(tokenizer)
    return [s for s in template.special_tokens if s not in have]


def encode_text(tokenizer, text: str, specials) -> list:
    """Encode ``text`` with the given special-token texts mapped to their single ids."""
    have = _special_ids(tokenizer)
    specials = sorted((s for s in specials if s in have), key=len, reverse=True)
    if not specials:
        return list(tokenizer.encode(text))
    ids = []
    for k, part in enumerate(re.split("(" + "|".join(map(re.escape, specials)) + ")", text)):
        if k % 2:
            ids.append(int(have[part]))
        elif part:
            ids.extend(tokenizer.encode(part))
    return ids


def encode_chat(template: ChatTemplate, tokenizer, messages, add_generation_prompt=False):
    """Token ids of the rendered conversation and a same-length assistant mask (list of bool).

    Raises ValueError when the tokenizer lacks one of the template's special tokens
    (add them with :func:`scratchllm.finetune.data.add_special_tokens`)."""
    missing = missing_special_tokens(template, tokenizer)
    if missing:
        raise ValueError(f"template {template.name!r} needs special tokens the tokenizer lacks: "
                         f"{missing} (fine-tuning adds them; pass a tokenizer that has them)")
    specials = set(template.special_tokens) | set(_special_ids(tokenizer))
    if add_generation_prompt:
        text = template.render(messages, add_generation_prompt=True)
        ids = encode_text(tokenizer, text, specials)
        return ids, [False] * len(ids)
    ids, mask = [], []
    for text, is_asst in render_segments(template, messages):
        part = encode_text(tokenizer, text, specials)
        ids.extend(part)
        mask.extend([is_asst] * len(part))
    return ids, mask
