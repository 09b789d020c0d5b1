"""``scratchllm chat`` in a pseudo-terminal (pexpect): two turns, /reset, /system, /temperature,
Ctrl-C during a reply."""
import os
import signal
import sys

import pexpect
import pytest

import scratchllm as sl
from scratchllm.finetune.chat_template import get_template
from scratchllm.serve.conversation import Prompter
from scratchllm.serve.engine import SamplingParams, generate_ids
from scratchllm.serve.textstream import Detokenizer

from serve_helpers import ONE_THREAD

PROMPT = ">>> "


def _ctrl_c_as_in_a_terminal():
    """A child of a background job inherits SIGINT ignored (e.g. `make test &`); a user's chat
    runs in a terminal, where Ctrl-C is delivered: give the child the default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(model, *args):
    child = pexpect.spawn(sys.executable, ["-m", "scratchllm", "chat", "--model", str(model), *args],
                          env={**os.environ, **ONE_THREAD, "TERM": "dumb"}, encoding="utf-8", timeout=60,
                          dimensions=(40, 2000), preexec_fn=_ctrl_c_as_in_a_terminal)
    child.expect_exact(PROMPT)
    return child


def _say(child, line) -> str:
    """Send a line, return what came back before the next prompt (the echo of the line removed;
    the terminal shows each "\n" as "\r\n")."""
    child.sendline(line)
    child.expect_exact(PROMPT)
    assert child.before.startswith(line + "\r\n")
    return child.before[len(line) + 2:].replace("\r\n", "\n")


def _expected(model, tok, messages, max_tokens):
    """The greedy reply, computed here from the rendered conversation."""
    ids = Prompter(get_template("chatml"), tok).encode(messages)
    out, _ = generate_ids(model, ids, SamplingParams(max_tokens=max_tokens, temperature=0))
    d = Detokenizer(tok, ids)
    return "".join(d.push(i) for i in out) + d.flush()


def test_two_turns_reset_and_system(plain_model):
    model, tok = sl.load_model(str(plain_model)), sl.load_tokenizer(str(plain_model))
    child = _spawn(plain_model, "--temperature", "0", "--max-tokens", "12")
    try:
        u1, u2 = "Hello there!", "Tell me more."
        r1 = _say(child, u1)
        a1 = _expected(model, tok, [{"role": "user", "content": u1}], 12)
        assert r1 == a1 + "\n"
        r2 = _say(child, u2)
        conversation = [{"role": "user", "content": u1}, {"role": "assistant", "content": a1},
                        {"role": "user", "content": u2}]
        assert r2 == _expected(model, tok, conversation, 12) + "\n"
        assert r2 != _expected(model, tok, conversation[2:], 12) + "\n"      # the first turn mattered
        assert _say(child, "/reset") == "(conversation cleared)\n"
        assert _say(child, u1) == r1                                           # as if new
        assert _say(child, "/system Be brief.") == "(system prompt: 'Be brief.')\n"
        assert _say(child, "/reset") == "(conversation cleared)\n"
        with_system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": u2}]
        assert _say(child, u2) == _expected(model, tok, with_system, 12) + "\n"
        assert _say(child, "/temperature 0.5") == "(temperature 0.5)\n"
        assert "must be a number" in _say(child, "/temperature hot")
        assert "/reset" in _say(child, "/help")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_ctrl_c_stops_a_reply_without_leaving(plain_model):
    child = _spawn(plain_model, "--temperature", "0", "--max-tokens", "2000")
    try:
        child.sendline("Talk for a long time.")
        child.expect_exact("Talk for a long time.\r\n")
        child.expect(r"\S{3}")                                   # the reply has started streaming
        child.sendintr()                                         # Ctrl-C
        child.expect_exact(" [stopped]\r\n" + PROMPT, timeout=20)
        assert _say(child, "/temperature") == "(temperature 0.0)\n"     # still there, still listening
        child.sendintr()                                         # Ctrl-C at the prompt does not leave either
        child.expect_exact("(Ctrl-D or /quit to leave)")
        child.expect_exact(PROMPT)
        child.sendeof()                                          # Ctrl-D leaves
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


@pytest.mark.parametrize("bad", [["--max-tokens", "0"], ["--template", "nope"]])
def test_bad_arguments_are_one_line_errors(plain_model, bad):
    child = pexpect.spawn(sys.executable, ["-m", "scratchllm", "chat", "--model", str(plain_model), *bad],
                          env={**os.environ, **ONE_THREAD}, encoding="utf-8", timeout=60)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1 and "scratchllm chat: error:" in child.before
