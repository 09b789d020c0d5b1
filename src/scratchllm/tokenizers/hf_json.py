"""HF tokenizers: ``tokenizer.json`` (BPE models) and ``vocab.json`` + ``merges.txt`` folders.

Two kinds of BPE ``tokenizer.json`` are in use, and both are read:

- byte-level (GPT-2, Llama 3, SmolLM, Qwen): a ``ByteLevel`` pre-tokenizer (alone, or after a
  ``Split`` regex) maps each UTF-8 byte to a printable character, so every text is covered;
- SentencePiece-style (Llama 2, TinyLlama, Mistral): spaces become "▁" and a "▁" is put in
  front (normalizer ``Prepend`` + ``Replace``, or a ``Metaspace`` pre-tokenizer), characters
  outside the vocabulary fall back to ``<0xXX>`` byte tokens (``byte_fallback``).

Added tokens (``<s>``, ``<|eot_id|>``, ...) are cut out of the text before anything else, as HF
does. Other model kinds (WordPiece, Unigram, WordLevel) are refused with a message naming the
file and the field. ``tokenizer_config.json`` beside the file gives ``bos_token``/``eos_token``
and the ``chat_template``::

    >>> tok = load_hf_tokenizer("TinyLlama-1.1B-Chat/tokenizer.json")     # doctest: +SKIP
    >>> tok.encode("Hello world", add_special_tokens=True)                   # doctest: +SKIP
    [1, 15043, 3186]
    >>> tok.chat_template[:30]                                               # doctest: +SKIP
    "{% for message in messages %}\\n"
"""
from __future__ import annotations

import os
import re

from ..errors import FileFormatError
from ..jsonio import read_json
from .hf_bpe import HFBPE
from .hf_pipeline import (WS_CLASS, Piece, build_decoder, build_normalizer, build_pre_tokenizer,
                          build_template)

__all__ = ["HFTokenizer", "load_hf_tokenizer", "hf_from_spec", "load_vocab_merges",
           "read_tokenizer_config", "chat_template_of", "attach_config"]

SPACE = "\u2581"
_WORDS = re.compile(f"{SPACE}*[^{SPACE}]+|{SPACE}+")
_TRAILING_WS = re.compile(WS_CLASS + "*$")
_LEADING_WS = re.compile(WS_CLASS + "*")
_BOS_NAMES = ("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "<|endoftext|>")
_EOS_NAMES = ("</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>")


class _Added:
    __slots__ = ("id", "content", "special", "normalized", "lstrip", "rstrip", "single_word")

    def __init__(self, d: dict, where: str):
        if not isinstance(d, dict) or type(d.get("id")) is not int or d["id"] < 0 \
                or not isinstance(d.get("content"), str) or not d["content"]:
            raise FileFormatError(f"{where}: expected {{\"id\": int, \"content\": non-empty str, ...}}")
        self.id, self.content = d["id"], d["content"]
        self.special = bool(d.get("special", False))
        self.normalized = bool(d.get("normalized", not self.special))
        self.lstrip, self.rstrip = bool(d.get("lstrip", False)), bool(d.get("rstrip", False))
        self.single_word = bool(d.get("single_word", False))


class HFTokenizer:
    """An HF BPE tokenizer; ``encode``/``decode`` give HF's ids and text exactly.

    ``encode(text)`` gives the ids without BOS/EOS (HF: ``add_special_tokens=False``);
    ``add_special_tokens=True`` applies the post-processor's template (e.g. ``<s>`` in front),
    ``bos``/``eos`` put ``bos_id``/``eos_id`` around the ids as the other readers do.
    """

    def __init__(self, spec: dict, name: str = "tokenizer.json", config: dict | None = None,
                 chat_template: str | None = None):
        self.name = name
        model = spec.get("model")
        if not isinstance(model, dict):
            raise FileFormatError(f"{name}: no \"model\" object; not an HF tokenizer.json")
        kind = model.get("type", "BPE" if "merges" in model else None)
        if kind != "BPE":
            what = f"model.type is {kind!r}" if kind is not None else "model has no type and no merges"
            raise FileFormatError(f"{name}: {what}; only BPE tokenizers are read (GPT-2, Llama, SmolLM "
                             "kinds), not WordPiece, Unigram or WordLevel")
        self.model = HFBPE(model, f"{name}: model")
        self.normalizer = build_normalizer(spec.get("normalizer"), f"{name}: normalizer")
        self.pre_tokenizer = build_pre_tokenizer(spec.get("pre_tokenizer"), f"{name}: pre_tokenizer")
        self._decoder = build_decoder(spec.get("decoder"), f"{name}: decoder")
        self._before, self._after = build_template(spec.get("post_processor"), f"{name}: post_processor")
        added = spec.get("added_tokens") or []
        if not isinstance(added, list):
            raise FileFormatError(f"{name}: added_tokens must be a list")
        self.added = [_Added(d, f"{name}: added_tokens[{k}]") for k, d in enumerate(added)]
        # HF decodes a normalized added token as its normalized text ("friend" -> "▁friend")
        self._added_by_id = {a.id: self.normalizer(a.content) if a.normalized and self.normalizer
                             else a.content for a in self.added}
        self.special_tokens = {a.content: a.id for a in self.added if a.special}
        self._match_cache: dict = {}
        self._vocab_size = None
        self._by_word = self._words_are_independent(spec.get("pre_tokenizer"))
        self.chat_template = chat_template
        self._set_special_ids(config or {})

    # ---- vocabulary ---------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """One past the largest id (added tokens included)."""
        if self._vocab_size is None:
            self._vocab_size = max(max(self.model.id_to_token), max(self._added_by_id, default=-1)) + 1
        return self._vocab_size

    n_vocab = vocab_size

    def __len__(self) -> int:
        return self.vocab_size

    def id_to_token(self, i: int) -> str:
        tok = self._added_by_id.get(int(i))
        if tok is None:
            tok = self.model.id_to_token.get(int(i))
        if tok is None:
            raise ValueError(f"{self.name}: token id {int(i)} is not in the vocabulary "
                             f"(size {self.vocab_size})")
        return tok

    def token_to_id(self, token: str) -> int:
        for a in self.added:
            if a.content == token:
                return a.id
        if token not in self.model.vocab:
            raise KeyError(f"{self.name}: {token!r} is not a token")
        return self.model.vocab[token]

    def _set_special_ids(self, config: dict) -> None:
        """bos/eos/unk/pad from tokenizer_config.json, else the template, else usual names."""
        def lookup(key):
            value = config.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                try:
                    return self.token_to_id(value)
                except KeyError:
                    return None
            return None

        def by_name(names):
            for n in names:
                if n in self.special_tokens or n in self.model.vocab:
                    return self.token_to_id(n)
            return None

        self.bos_id = lookup("bos_token")
        if self.bos_id is None:
            self.bos_id = self._before[0] if self._before else by_name(_BOS_NAMES)
        self.eos_id = lookup("eos_token")
        if self.eos_id is None:
            self.eos_id = self._after[-1] if self._after else by_name(_EOS_NAMES)
        self.pad_id = lookup("pad_token")
        self.unk_id = lookup("unk_token")
        if self.unk_id is None:
            self.unk_id = self.model.unk_id

    # ---- encoding -----------------------------------------------------------------------
    def encode(self, text: str, bos: bool = False, eos: bool = False,
               add_special_tokens: bool = False, allowed_special=None) -> list[int]:
        """Text -> ids, as HF's ``tokenizer.encode(text, add_special_tokens=...)``.

        ``allowed_special``: None or "all" (HF's default: every added token in the text is
        one token), "none" (special added tokens are ordinary text, HF's
        ``encode_special_tokens``) or a set of the special tokens to recognise.
        """
        if allowed_special in (None, "all"):
            skip = frozenset()
        elif allowed_special == "none" or not allowed_special:
            skip = frozenset(self.special_tokens)
        else:
            unknown = set(allowed_special) - self.special_tokens.keys()
            if unknown:
                raise ValueError(f"{self.name}: not special tokens: {sorted(unknown)}")
            skip = frozenset(self.special_tokens.keys() - set(allowed_special))
        if re.search("[\ud800-\udfff]", text):   # lone surrogates cannot be UTF-8: U+FFFD
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        ids: list[int] = []
        for piece, token_id in self._segments(text, skip):
            if token_id is not None:
                ids.append(token_id)
            else:
                ids += self._model_ids(piece)
        if add_special_tokens:
            ids = self._before + ids + self._after
        if bos:
            ids.insert(0, self._need(self.bos_id, "bos"))
        if eos:
            ids.append(self._need(self.eos_id, "eos"))
        return ids

    def _need(self, i, which: str) -> int:
        if i is None:
            raise ValueError(f"{self.name}: has no {which} token")
        return i

    def _segments(self, text: str, skip: frozenset):
        """Added tokens cut out, the rest normalized and pre-tokenized: (Piece, None) or
        (None, added token id), in order."""
        raw, norm = self._matchers(skip)
        segs = _split_added(text, raw, True) if raw else [(text, None, True)]
        out = []
        for t, i, at_start in segs:
            if i is not None:
                out.append((None, i))
                continue
            if self.normalizer:
                t = self.normalizer(t)
            for t2, i2, at2 in (_split_added(t, norm, at_start) if norm else [(t, None, at_start)]):
                if i2 is not None:
                    out.append((None, i2))
                elif t2:
                    pieces = [Piece(t2, at2)]
                    if self.pre_tokenizer:
                        pieces = self.pre_tokenizer(pieces)
                    out += [(p, None) for p in pieces]
        return out

    def _matchers(self, skip: frozenset):
        """Leftmost-longest regexes for the non-normalized and the normalized added tokens."""
        hit = self._match_cache.get(skip)
        if hit is None:
            raw, norm = {}, {}
            for a in self.added:
                if a.special and a.content in skip:
                    continue
                if a.normalized:
                    norm[self.normalizer(a.content) if self.normalizer else a.content] = a
                else:
                    raw[a.content] = a
            hit = tuple((re.compile("|".join(map(re.escape, sorted(d, key=len, reverse=True)))), d)
                        if d else None for d in (raw, norm))
            self._match_cache[skip] = hit
        return hit

    def _model_ids(self, piece: Piece) -> list[int]:
        text, model = piece.text, self.model
        if not self._by_word or (model.ignore_merges and text in model.vocab):
            return list(model.tokenize(text))
        ids: list[int] = []
        for w in _WORDS.findall(text):
            ids += model.merge_word(w)
        if model.fuse_unk and model.unk_id is not None and model.unk_id in ids:
            u = model.unk_id
            ids = [i for k, i in enumerate(ids) if not (i == u and k and ids[k - 1] == u)]
        return ids

    def _words_are_independent(self, pre_spec) -> bool:
        """SentencePiece-style files have no pre-tokenizer (or a Metaspace one that does not
        split), so a whole text is one pre-token. When no merge makes a token with "▁" after
        another character, merges never cross the start of a "▁"-word, and the words can be
        merged one by one (and cached): exact, and fast."""
        m = self.model
        whole = pre_spec is None or (isinstance(pre_spec, dict) and pre_spec.get("type") == "Metaspace"
                                     and pre_spec.get("replacement") == SPACE and pre_spec.get("split") is False)
        if not whole or m.prefix or m.suffix or SPACE not in m.vocab:
            return False
        if m.byte_fallback and None in m._byte_ids:
            return False
        id_to_token = m.id_to_token
        return not any(SPACE in id_to_token[new].lstrip(SPACE) for _, new in m.merges.values())

    # ---- decoding -----------------------------------------------------------------------
    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Ids -> text, as HF's ``tokenizer.decode(ids, skip_special_tokens=...)``."""
        tokens = []
        for i in ids:
            tok = self.id_to_token(i)
            if skip_special_tokens and tok in self.special_tokens:
                continue
            tokens.append(tok)
        return self._decoder(tokens) if tokens else ""

    def __repr__(self) -> str:
        return f"HFTokenizer(name={self.name!r}, vocab_size={self.vocab_size})"


def _split_added(text: str, matcher, at_start: bool):
    """HF's ``AddedVocabulary::find_matches``: [(text, None, at_start) | (text, id, False)]."""
    rx, by_text = matcher
    out, offset = [], 0
    for m in rx.finditer(text):
        start, stop = m.span()
        a = by_text[m.group(0)]
        if a.single_word:
            if (start > 0 and _is_word(text[start - 1])) or (stop < len(text) and _is_word(text[stop])):
                continue
        if a.lstrip:
            start = max(_TRAILING_WS.search(text, 0, start).start(), offset)
        if a.rstrip:
            stop = _LEADING_WS.match(text, stop).end()
        if offset < start:
            out.append((text[offset:start], None, at_start and offset == 0))
        out.append((text[start:stop], a.id, False))
        offset = stop
    if offset != len(text):
        out.append((text[offset:], None, at_start and offset == 0))
    return out


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


# ---- files ---------------------------------------------------------------------------------
def read_tokenizer_config(folder) -> dict:
    """``tokenizer_config.json`` of a folder ({} when there is none)."""
    path = os.path.join(os.fspath(folder), "tokenizer_config.json")
    return read_json(path, "tokenizer config") if os.path.isfile(path) else {}


def chat_template_of(folder, config: dict) -> str | None:
    """The chat template: ``chat_template`` in tokenizer_config.json (a string, or a list of
    ``{"name", "template"}`` where "default" is taken), else a ``chat_template.jinja`` file."""
    value = config.get("chat_template")
    if isinstance(value, list):
        named = {d.get("name"): d.get("template") for d in value if isinstance(d, dict)}
        value = named.get("default", next(iter(named.values()), None))
    if isinstance(value, str):
        return value
    path = os.path.join(os.fspath(folder), "chat_template.jinja")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    return None


def attach_config(tok, folder):
    """Give a tokenizer read from an HF folder that folder's ``chat_template`` (any kind)."""
    config = read_tokenizer_config(folder)
    template = chat_template_of(folder, config)
    if template is not None or not hasattr(tok, "chat_template"):
        tok.chat_template = template
    return tok


def load_hf_tokenizer(path) -> HFTokenizer:
    """An HF ``tokenizer.json``; ``tokenizer_config.json`` beside it is read too."""
    path = os.fspath(path)
    spec = read_json(path, "tokenizer.json")
    return hf_from_spec(spec, path)


def hf_from_spec(spec: dict, path: str) -> HFTokenizer:
    folder = os.path.dirname(os.path.abspath(path))
    config = read_tokenizer_config(folder)
    return HFTokenizer(spec, name=path, config=config, chat_template=chat_template_of(folder, config))


def load_vocab_merges(folder) -> HFTokenizer:
    """A GPT-2-style folder: ``vocab.json`` (token -> id) + ``merges.txt`` (one merge a line),
    byte-level, with the special tokens tokenizer_config.json names (else ``<|endoftext|>``)."""
    folder = os.fspath(folder)
    vocab_path, merges_path = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    vocab = read_json(vocab_path, "vocab.json")
    try:
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{merges_path}: not UTF-8 text ({exc})") from None
    merges = [ln for ln in lines if ln and not ln.startswith("#version")]
    config = read_tokenizer_config(folder)
    added = {}
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        for key, d in decoder.items():
            if isinstance(d, dict) and str(key).isdigit():
                added[int(key)] = dict(d, id=int(key))
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = config.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str) and value in vocab and vocab[value] not in added:
            added[vocab[value]] = {"id": vocab[value], "content": value, "special": True}
    if not added and "<|endoftext|>" in vocab:
        added[vocab["<|endoftext|>"]] = {"id": vocab["<|endoftext|>"], "content": "<|endoftext|>",
                                         "special": True}
    spec = {"added_tokens": list(added.values()), "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "use_regex": True,
                              "add_prefix_space": bool(config.get("add_prefix_space", False))},
            "decoder": {"type": "ByteLevel"}, "post_processor": None,
            "model": {"type": "BPE", "vocab": vocab, "merges": merges}}
    return HFTokenizer(spec, name=vocab_path, config=config, chat_template=chat_template_of(folder, config))
