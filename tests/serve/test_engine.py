"""The engine in-process: the batched step equals the model's own decoder, a reply does not depend
on the requests decoded beside it, and the chat context policy."""
import threading

import numpy as np
import pytest

import scratchllm as sl
from scratchllm.finetune.chat_template import get_template
from scratchllm.serve.conversation import Prompter
from scratchllm.errors import ScratchLLMError
from scratchllm.serve.engine import (BatchedBackend, Engine, QueueFull, Request, SamplingParams, generate_ids,
                                     pick_backend)

from serve_helpers import STORIES, STORIES_TOK, TEXT

CONFIGS = {
    "gpt-learned": {"model_type": "gpt", "vocab_size": 97, "n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 64},
    "gpt-sinusoidal": {"model_type": "gpt", "vocab_size": 97, "n_layer": 2, "n_head": 2, "n_embd": 32,
                       "block_size": 64, "positional": "sinusoidal"},
    "llama-gqa": {"model_type": "llama", "vocab_size": 97, "dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
                  "max_seq_len": 64},
}


@pytest.fixture(params=sorted(CONFIGS))
def model(request):
    return sl.models.build_model(CONFIGS[request.param], generator=sl.Generator(3))


def test_batched_step_equals_plain_decoder(model):
    backend, why = pick_backend(model)
    assert isinstance(backend, BatchedBackend), why
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 97, size=n) for n in (7, 1, 12)]
    states = [backend.new_state(40) for _ in prompts]
    plain = [model.decoder(1, 40) for _ in prompts]
    got = [backend.forward([s], p[None]) for s, p in zip(states, prompts)]
    want = [d.step(p[None]) for d, p in zip(plain, prompts)]
    for _ in range(6):                                   # rows at different positions, one forward
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
        nxt = np.stack([np.argmax(w[0]) for w in want])
        both = backend.forward(states, nxt[:, None])
        got = np.split(both, len(prompts))
        want = [d.step(np.array([[t]])) for d, t in zip(plain, nxt)]


def _run(engine, prompts, params):
    """Submit all prompts at once, wait for all; -> list of (ids, finish)."""
    results = [([], []) for _ in prompts]
    done = threading.Semaphore(0)

    def emitter(k):
        def emit(kind, value):
            if kind == "token":
                results[k][0].append(value)
            else:
                results[k][1].append(value)
                done.release()
        return emit
    for k, p in enumerate(prompts):
        engine.submit(Request(p, params, emitter(k)))
    for _ in prompts:
        assert done.acquire(timeout=60)
    return [(ids, fin[0]) for ids, fin in results]


def test_replies_do_not_depend_on_their_neighbours():
    """Greedy and seeded sampling: alone, 3 together with 2 slots (one waits), and the round-robin
    fallback give the same ids; and greedy equals model.generate."""
    model = sl.load_model(str(STORIES))
    tok = sl.load_tokenizer(str(STORIES_TOK))
    prompts = [tok.encode(t, bos=True) for t in ("Once upon a time", "Tom had a red", "The sun was")]
    for params in (SamplingParams(max_tokens=20, temperature=0),
                   SamplingParams(max_tokens=20, temperature=0.9, top_k=40, seed=7)):
        alone = [generate_ids(model, p, params) for p in prompts]
        batched = Engine(model, slots=2).start()
        serial = Engine(model, slots=3, batching="off").start()
        try:
            assert batched.batching == "continuous batching" and serial.batching == "round-robin"
            assert _run(batched, prompts, params) == alone
            assert _run(serial, prompts, params) == alone
            assert batched.rows_stepped > batched.steps                 # some steps had several rows
        finally:
            batched.close()
            serial.close()
    greedy = model.generate(prompts[0], 20, temperature=0)[0, len(prompts[0]):].tolist()
    assert generate_ids(model, prompts[0], SamplingParams(max_tokens=20, temperature=0))[0] == greedy


def test_cancel_and_stop_ids():
    model = sl.models.build_model(CONFIGS["gpt-learned"], generator=sl.Generator(3))
    engine = Engine(model, slots=1).start()
    try:
        ids, finish = generate_ids(model, [1, 2, 3], SamplingParams(max_tokens=30, temperature=0))
        stop = ids[4]
        first = ids.index(stop)
        got, fin = generate_ids(model, [1, 2, 3], SamplingParams(max_tokens=30, temperature=0,
                                                                 stop_ids=frozenset({stop})))
        assert (got, fin) == (ids[:first], "stop")                   # the stop token is not part of the reply
        events = []
        gate = threading.Event()

        def emit(kind, value):
            events.append((kind, value))
            if kind == "token" and len(events) == 2:
                req.cancel()
            if kind != "token":
                gate.set()
        req = Request([1, 2, 3], SamplingParams(max_tokens=30, temperature=0), emit)
        engine.submit(req)
        assert gate.wait(30)
        assert events[-1] == ("done", "cancelled") and len(events) <= 4
        assert engine.load()["active"] == 0
        with pytest.raises(ScratchLLMError, match="context"):
            engine.submit(Request([1] * 60, SamplingParams(max_tokens=10), emit))
    finally:
        engine.close()


def test_context_policy_drops_oldest_turns_never_the_system_prompt():
    tok = sl.load_tokenizer(str(STORIES_TOK))
    p = Prompter(get_template("chatml"), tok, bos_id=tok.bos_id)
    system = {"role": "system", "content": "Be kind."}
    turns = []
    for i in range(6):
        turns += [{"role": "user", "content": f"question {i} " * 5},
                  {"role": "assistant", "content": f"answer {i} " * 5}]
    msgs = [system] + turns + [{"role": "user", "content": "last one"}]
    full = len(p.encode(msgs))
    kept, ids = p.fit(msgs, context=full - 30, room=10)
    assert kept[0] == system and kept[-1] == msgs[-1] and kept[1]["role"] == "user"
    assert len(ids) + 10 <= full - 30 and len(kept) < len(msgs)
    assert kept[1:] == msgs[len(msgs) - len(kept) + 1:]               # what is kept is the most recent
    assert ids[0] == tok.bos_id and ids == p.encode(kept)
    with pytest.raises(ScratchLLMError, match="does not fit"):
        p.fit(msgs, context=20, room=10)
    # ChatML text (no special ids in this vocabulary): the end-of-turn is a stop string; <s>, </s> stop ids
    assert p.stop_strings == ("<|im_end|>",) and p.stop_ids == {tok.bos_id, tok.eos_id}


def test_queue_limit():
    model = sl.models.build_model(CONFIGS["gpt-learned"], generator=sl.Generator(3))
    engine = Engine(model, slots=1, max_queue=1)                  # not started: nothing leaves the queue
    params = SamplingParams(max_tokens=5)
    engine.submit(Request([1, 2], params, lambda kind, value: None))
    engine.submit(Request([1, 2], params, lambda kind, value: None))
    with pytest.raises(QueueFull, match="busy"):
        engine.submit(Request([1, 2], params, lambda kind, value: None))
    assert engine.load() == {"active": 0, "waiting": 2, "slots": 1}


def test_template_end_tokens_become_stop_ids():
    tok = sl.BPETokenizer.train(TEXT, 300, special_tokens={"<|endoftext|>": 300, "<|im_start|>": 301,
                                                           "<|im_end|>": 302}, eos="<|endoftext|>")
    p = Prompter(get_template("chatml"), tok)
    assert p.native and p.stop_ids == {302, 300} and p.stop_strings == ()
    ids = p.encode([{"role": "user", "content": "Hi"}])
    assert ids[0] == 301 and ids.count(302) == 1 and tok.decode(ids).endswith("<|im_start|>assistant\n")
