"""A run's data: corpus -> tokenizer -> ``train.bin``/``val.bin`` in ``<run>/data``.

Tokenizing happens once per run; a resumed run maps the same id files again.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..data import TokenFile, check_split_lengths, corpus_files, read_corpus, read_meta, write_token_files
from ..data.dataset import check_token_files
from ..errors import ScratchLLMError
from .checkpoint import write_errors
from .killpoints import kill_point
from .tokenizer_files import choose_tokenizer

DATA_DIR = "data"


def corpus_name(paths) -> str:
    files = corpus_files(paths)
    return str(files[0]) if len(files) == 1 else f"{len(files)} files under {', '.join(map(str, paths))}"


def tokenize_corpus(cfg, model=None, log=print, tok=None):
    """Read the corpus, pick the tokenizer (unless given), encode and check the lengths.

    Returns ``(tokenizer, ids, meta)``; nothing is written (see ``write_run_data``).
    """
    text = read_corpus(cfg.data)
    what = corpus_name(cfg.data)
    tok = tok or choose_tokenizer(cfg.tokenizer, text, cfg.bpe_vocab_size, cfg.init_from, model, log)
    log(f"tokenizing {what} ({len(text):,} characters) ...")
    ids = tok.encode_array(text)
    if len(ids) == 0:
        raise ScratchLLMError(f"the corpus {what} gives no tokens")
    n_val = int(round(len(ids) * cfg.val_fraction))
    check_split_lengths(len(ids) - n_val, n_val, cfg.block_size, f"the corpus {what}")
    vocab = tok.vocab_size
    if model is not None:
        model_vocab = int(model.config.vocab_size)
        if int(ids.max()) >= model_vocab:
            raise ScratchLLMError(f"the tokenizer gives id {int(ids.max())} but the model {cfg.init_from} "
                                  f"has only {model_vocab} ids; give the model's own tokenizer")
        vocab = max(vocab, model_vocab)
    meta = {"vocab_size": vocab, "corpus": what, "characters": len(text),
            "corpus_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]}
    return tok, ids, meta


def write_run_data(run_dir, ids, meta: dict, val_fraction: float, log=print) -> dict:
    """Write ``<run>/data/{train,val}.bin`` and ``meta.json``."""
    with write_errors(Path(run_dir) / DATA_DIR):
        meta = write_token_files(ids, Path(run_dir) / DATA_DIR, meta["vocab_size"], val_fraction,
                                 extra_meta={k: v for k, v in meta.items() if k != "vocab_size"})
    kill_point("data.file")
    log(f"{meta['train_tokens']:,} training and {meta['val_tokens']:,} validation tokens, "
        f"vocabulary {meta['vocab_size']}")
    return meta


def open_token_files(run_dir):
    """The memory-mapped ``(train, val)`` id files of a run, or None when the set is not there
    (no ``meta.json``: never written, or cut short before its last file). Files that do not
    match their ``meta.json`` (size, checksum) raise ``ScratchLLMError``."""
    folder = Path(run_dir) / DATA_DIR
    meta = read_meta(folder)
    if meta is None:
        return None
    check_token_files(folder, meta)
    return TokenFile(folder / "train.bin", meta["dtype"]), TokenFile(folder / "val.bin", meta["dtype"])
