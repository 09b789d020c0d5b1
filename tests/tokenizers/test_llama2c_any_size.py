"""llama2.c tokenizer.bin of any size: a 105-piece SentencePiece vocabulary without byte-fallback
pieces, exported as llama2.c's tokenizer.py does, encodes and decodes as SentencePiece; and the
SentencePiece decode drops the first piece's "▁" as sentencepiece does (run.c: after BOS)."""
import io
import struct

import pytest

from scratchllm.tokenizers import SentencePieceBPE, load_tokenizer


def export_llama2c(sp, path):
    """llama2.c's tokenizer.py export: "▁" -> " ", <s>/</s> wrapped in newlines, uint32 lengths."""
    tokens, scores = [], []
    for i in range(sp.get_piece_size()):
        t = sp.id_to_piece(i)
        if i == sp.bos_id():
            t = "\n<s>\n"
        elif i == sp.eos_id():
            t = "\n</s>\n"
        tokens.append(t.replace("\u2581", " ").encode("utf-8"))
        scores.append(sp.get_score(i))
    with open(path, "wb") as f:
        f.write(struct.pack("I", max(len(t) for t in tokens)))
        for b, s in zip(tokens, scores):
            f.write(struct.pack("fI", s, len(b)))
            f.write(b)


@pytest.fixture(scope="module")
def small_sp(corpus):
    import sentencepiece
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus[:60_000].split("\n")), model_writer=model, vocab_size=105,
        model_type="bpe", character_coverage=1.0, byte_fallback=False, minloglevel=2,
        normalization_rule_name="identity", remove_extra_whitespaces=False)   # as llama2.c's vocabularies
    return sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())


def test_105_piece_tokenizer_bin_reads_and_matches_sentencepiece(small_sp, corpus, tmp_path):
    path = tmp_path / "tok105.bin"
    export_llama2c(small_sp, path)
    tok = load_tokenizer(path)
    assert isinstance(tok, SentencePieceBPE) and tok.vocab_size == 105 and not tok.model.byte_fallback
    for text in (corpus[200_000:210_000], "Zoë went to 日本 — twice!!", "  two  spaces ", "x\n\ny"):
        ids = small_sp.encode(text)
        assert tok.encode(text) == ids, text                # unknown characters: <unk> (id 0)
        assert tok.decode(ids) == small_sp.decode(ids), text
    assert tok.encode("Zoë", bos=True)[0] == 1


def test_too_short_tokenizer_bin_is_refused(tmp_path):
    path = tmp_path / "two.bin"
    path.write_bytes(struct.pack("<i", 8) + b"".join(struct.pack("<fi", 0.0, 1) + b"a" for _ in range(2)))
    with pytest.raises(ValueError, match=r"two.bin: only 2 tokens; a llama2.c tokenizer.bin starts with <unk>"):
        load_tokenizer(path)


def test_decode_first_space_as_sentencepiece_and_run_c(llama2_bin, sp_ref):
    """SentencePiece drops the "▁" of the first text piece only (control ids in front do not
    count); run.c drops it after BOS. Decoding prompt + continuation as one sequence therefore
    shows "Zoo was", where decoding the continuation alone would lose the space."""
    zoo, was = sp_ref.encode("Zoo"), sp_ref.encode(" was")[-1:]
    for ids in ([1] + zoo + was, zoo + was, was, [1] + was, [1, 1] + zoo, zoo + [2, 1] + zoo + was,
                [29871] + zoo, [259] + zoo, [13] + zoo, [0] + zoo, [1, 243, 162] + zoo):
        assert llama2_bin.decode(ids) == sp_ref.decode(ids), ids
    assert llama2_bin.decode([1] + zoo + was) == "Zoo was"
    assert llama2_bin.decode(was) == "was"
