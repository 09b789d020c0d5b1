"""Many clients at once: 16 concurrent streams finish with the replies each gets alone, decoded in
batches; a client killed mid-stream frees its slot and does not stall the others."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

PROMPTS = [f"{who} {what}" for who in ("Once upon a time", "One day, a dog", "Tom and Sue", "The little bird")
           for what in ("went to the park.", "found a box.", "was sad.", "saw the sun.")]


def _stream(client, prompt, max_tokens, **kw):
    chunks = list(client.completions.create(model="stories", prompt=prompt, max_tokens=max_tokens, temperature=0,
                                            stream=True, stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    return text, chunks[-1].usage.completion_tokens, [c.choices[0].finish_reason for c in chunks if c.choices][-1]


def test_sixteen_concurrent_streams_match_their_solo_replies(stories_server):
    client = stories_server.client()
    solo = [_stream(client, p, 48) for p in PROMPTS]              # one at a time: the reference
    before = stories_server.health()
    clients = [stories_server.client() for _ in PROMPTS]
    start = threading.Barrier(len(PROMPTS))

    def together_(k):
        start.wait()                                              # all 16 ask at the same moment
        return _stream(clients[k], PROMPTS[k], 48)
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(together_, range(len(PROMPTS))))
    assert together == solo
    after = stories_server.wait_idle()
    assert after["active"] == 0 and after["waiting"] == 0
    steps = after["decode_steps"] - before["decode_steps"]
    rows = after["rows_stepped"] - before["rows_stepped"]
    assert after["batching"] == "continuous batching"
    assert rows / steps > 2.0, f"mean batch {rows / steps:.2f}: concurrent requests were not decoded together"


KILLED_CLIENT = textwrap.dedent("""
    import sys, openai
    client = openai.OpenAI(base_url=sys.argv[1], api_key="none", max_retries=0)
    for chunk in client.completions.create(model="tiny-plain", prompt="Hello world", max_tokens=2000,
                                           temperature=0, stream=True):
        print("chunk", flush=True)
""")


def test_killed_client_frees_its_slot(plain_server, tmp_path):
    """Two clients ask for 2000 tokens each (seconds of work) and are killed after their first
    chunk: their slots are free well before those replies could have ended, and the clients
    running beside them finish normally."""
    script = tmp_path / "client.py"
    script.write_text(KILLED_CLIENT)
    victims = [subprocess.Popen([sys.executable, str(script), plain_server.url + "/v1"], stdout=subprocess.PIPE,
                                text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}) for _ in range(2)]
    client = plain_server.client()
    args = dict(model="tiny-plain", max_tokens=30, temperature=0)
    before = plain_server.health()
    try:
        for v in victims:
            assert v.stdout.readline() == "chunk\n"                 # streaming has started
        assert plain_server.health()["active"] == 2
        with ThreadPoolExecutor(4) as pool:
            others = [pool.submit(lambda p: client.completions.create(prompt=p, stream=True, **args), p)
                      for p in ("Hello", "The quick", "Emoji", "She sells")]
            for v in victims:
                os.kill(v.pid, signal.SIGKILL)                      # gone without closing anything
            texts = ["".join(c.choices[0].text for c in f.result()) for f in others]
        h = plain_server.wait_idle(timeout=10)
        assert h["active"] == 0 and h["waiting"] == 0, h              # the killed streams left their slots
        assert h["rows_stepped"] - before["rows_stepped"] < 2 * 1000, h   # long before 2 x 2000 tokens
        solo = [client.completions.create(prompt=p, **args).choices[0].text
                for p in ("Hello", "The quick", "Emoji", "She sells")]
        assert texts == solo
    finally:
        for v in victims:
            v.kill()
            v.wait()
            v.stdout.close()


def test_non_streamed_request_of_a_gone_client_is_cancelled(plain_server):
    """A client that hangs up while waiting for a (non-streamed) 2000-token reply frees its slot."""
    before = plain_server.health()
    port = int(plain_server.url.rsplit(":", 1)[1])
    body = json.dumps({"model": "tiny-plain", "prompt": "Hello", "max_tokens": 2000, "temperature": 0}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.monotonic() + 10
        while plain_server.health()["active"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert plain_server.health()["active"] == 1
    h = plain_server.wait_idle(timeout=10)
    assert h["active"] == 0 and h["rows_stepped"] - before["rows_stepped"] < 1500, h
