"""Data: text -> token-id files (memory-mapped) -> random batches; the bundled Tiny Shakespeare."""
from ..tokenizers.char import CharTokenizer
from .corpus import bundled_corpus_path, corpus_files, read_corpus
from .dataset import (TokenFile, check_split_lengths, check_token_files, file_sha256, id_dtype, read_meta,
                      split_ids, write_token_files)

__all__ = ["CharTokenizer", "bundled_corpus_path", "corpus_files", "read_corpus", "TokenFile",
           "check_split_lengths", "check_token_files", "file_sha256", "id_dtype", "read_meta", "split_ids",
           "write_token_files"]
