"""Helpers of the serving tests: models and a real server process.

- ``stories``: Karpathy's pretrained stories260K (Llama, SentencePiece vocabulary of 512) from
  ../shared/data: real text, so greedy replies can be checked against the known continuation;
- ``chat_model``: a tiny random GPT with a byte-level BPE trained here (multi-byte characters,
  ChatML's special tokens, ``<|endoftext|>`` as eos);
- ``plain_model``: a tiny random GPT whose tokenizer has no special tokens at all, so nothing
  ends its replies early: the page and the REPL tests need replies that are still streaming.

A ``Server`` is ``python -m scratchllm serve ... --port 0`` in a subprocess; it prints the
address it listens on, which the fixture reads.
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import scratchllm as sl

DATA = Path(__file__).resolve().parents[1] / "data"        # copies of ../shared/data (tests/data/README.md)
STORIES = DATA / "stories260K" / "stories260K.bin"
STORIES_TOK = DATA / "stories260K" / "tok512.bin"
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TEXT = ("Hello world! Héllo wörld, naïve café. 日本語のテキスト。 Emoji 🙂🚀 ok. Ünïcödé ßtraße. " * 20
        + "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore. " * 30)


def make_model(folder: Path, specials: bool, block_size: int, seed: int) -> Path:
    """A random GPT saved with its BPE tokenizer in ``folder`` (what ``sl.load_model`` reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    extra = {"<|endoftext|>": 400, "<|im_start|>": 401, "<|im_end|>": 402} if specials else None
    tok = sl.BPETokenizer.train(TEXT, 400, pattern="gpt4", special_tokens=extra,
                                eos="<|endoftext|>" if specials else None)
    tok.save(folder / "tokenizer.json")
    model = sl.models.build_model({"model_type": "gpt", "vocab_size": tok.vocab_size, "n_layer": 2, "n_head": 2,
                                   "n_embd": 32, "block_size": block_size}, generator=sl.Generator(seed))
    for p in model.parameters():                  # larger weights: replies that depend on the prompt
        if p.data.ndim == 2:                      # (GPT-2's N(0, 0.02) makes every reply alike)
            p.data *= 8.0
    model.save_pretrained(folder)
    return folder


class Server:
    """``scratchllm serve`` in a subprocess on a free port of 127.0.0.1."""

    def __init__(self, *args, timeout: float = 60.0):
        env = {**os.environ, **ONE_THREAD}
        self.proc = subprocess.Popen([sys.executable, "-m", "scratchllm", "serve", "--port", "0", *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()                 # "... on http://127.0.0.1:PORT"
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()}")
        self.url = match.group(1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.health()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError(f"server at {self.url} did not answer: {self.proc.stderr.read()}")
                time.sleep(0.05)

    def health(self) -> dict:
        return self.call("GET", "/health")[1]

    def call(self, method: str, path: str, body=None, headers=None, raw: bytes = None):
        """One plain HTTP request (no client library) -> (status, parsed JSON body)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def wait_idle(self, timeout: float = 10.0) -> dict:
        """Wait until no request is active or waiting; -> the last /health."""
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            if (h["active"] == 0 and h["waiting"] == 0) or time.monotonic() > deadline:
                return h
            time.sleep(0.05)

    def client(self, api_key: str = "none", **kw):
        import openai
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, timeout=60, **kw)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
