"""Every bad request gets OpenAI's error object with a 4xx status, and the server keeps serving."""
import openai
import pytest

OK_CHAT = {"model": "stories", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
OK_COMPLETION = {"model": "stories", "prompt": "Once", "max_tokens": 2}

BAD = [  # (path, body, status, param or None, code or None)
    ("/v1/chat/completions", {**OK_CHAT, "temperature": "hot"}, 400, "temperature", None),
    ("/v1/chat/completions", {**OK_CHAT, "temperature": 3}, 400, "temperature", None),
    ("/v1/chat/completions", {**OK_CHAT, "max_tokens": "x"}, 400, "max_tokens", None),
    ("/v1/chat/completions", {**OK_CHAT, "max_tokens": 0}, 400, "max_tokens", None),
    ("/v1/chat/completions", {**OK_CHAT, "max_tokens": True}, 400, "max_tokens", None),
    ("/v1/chat/completions", {**OK_CHAT, "top_p": 0}, 400, "top_p", None),
    ("/v1/chat/completions", {**OK_CHAT, "seed": 1.5}, 400, "seed", None),
    ("/v1/chat/completions", {**OK_CHAT, "stream": "yes"}, 400, "stream", None),
    ("/v1/chat/completions", {**OK_CHAT, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", None),
    ("/v1/chat/completions", {**OK_CHAT, "stop": 7}, 400, "stop", None),
    ("/v1/chat/completions", {**OK_CHAT, "n": 2}, 400, "n", None),
    ("/v1/chat/completions", {**OK_CHAT, "logprobs": True}, 400, "logprobs", None),
    ("/v1/chat/completions", {**OK_CHAT, "presence_penalty": 1.0}, 400, "presence_penalty", None),
    ("/v1/chat/completions", {**OK_CHAT, "tools": [{"type": "function"}]}, 400, "tools", None),
    ("/v1/chat/completions", {**OK_CHAT, "stream_options": {"include_usage": True}}, 400, "stream_options", None),
    ("/v1/chat/completions", {**OK_CHAT, "frobnicate": 1}, 400, "frobnicate", None),
    ("/v1/chat/completions", {**OK_CHAT, "messages": "Hi"}, 400, "messages", None),
    ("/v1/chat/completions", {**OK_CHAT, "messages": []}, 400, "messages", None),
    ("/v1/chat/completions", {**OK_CHAT, "messages": [{"role": "robot", "content": "x"}]}, 400,
     "messages[0].role", None),
    ("/v1/chat/completions", {**OK_CHAT, "messages": [{"role": "user", "content": 5}]}, 400,
     "messages[0].content", None),
    ("/v1/chat/completions", {"messages": OK_CHAT["messages"]}, 400, "model", None),
    ("/v1/chat/completions", {**OK_CHAT, "model": "gpt-4o"}, 404, "model", "model_not_found"),
    ("/v1/chat/completions", {**OK_CHAT, "max_tokens": 401}, 400, "max_tokens", None),          # server limit
    ("/v1/chat/completions", {**OK_CHAT, "messages": [{"role": "user", "content": "word " * 600}]}, 400,
     "messages", "context_length_exceeded"),
    ("/v1/completions", {**OK_COMPLETION, "prompt": "Once " * 200, "max_tokens": 400}, 400, "max_tokens",
     "context_length_exceeded"),
    ("/v1/completions", {**OK_COMPLETION, "prompt": ["a", "b"]}, 400, "prompt", None),
    ("/v1/completions", {**OK_COMPLETION, "prompt": [1, 100000]}, 400, None, None),            # id out of vocab
    ("/v1/completions", {**OK_COMPLETION, "prompt": []}, 400, "prompt", None),
    ("/v1/completions", {**OK_COMPLETION, "echo": True}, 400, "echo", None),
    ("/v1/completions", {**OK_COMPLETION, "logprobs": 2}, 400, "logprobs", None),
    ("/v1/completions", {**OK_COMPLETION, "messages": []}, 400, "messages", None),              # not a field here
]


def _check_error(status, body, want_status, param=None, code=None):
    assert status == want_status, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["param"] == param and err["code"] == code


@pytest.mark.parametrize("path,body,status,param,code", BAD, ids=[f"{b[0][4:]}:{i}" for i, b in enumerate(BAD)])
def test_bad_request_fields(stories_server, path, body, status, param, code):
    _check_error(*stories_server.call("POST", path, body), status, param, code)


def test_malformed_json_and_wrong_methods(stories_server):
    s = stories_server
    _check_error(*s.call("POST", "/v1/chat/completions", raw=b'{"model": "stories", "messages": ['), 400)
    _check_error(*s.call("POST", "/v1/chat/completions", raw=b"\xff\xfe"), 400)
    _check_error(*s.call("POST", "/v1/chat/completions", raw=b"[1, 2]"), 400)
    _check_error(*s.call("GET", "/v1/chat/completions"), 405, code="method_not_allowed")
    _check_error(*s.call("GET", "/v1/engines"), 404, code="not_found")
    _check_error(*s.call("GET", "/v1/models/nope"), 404, "model", "model_not_found")


def test_request_too_large(chat_server):
    big = {"model": "tiny-chat", "messages": [{"role": "user", "content": "x" * 30000}]}
    status, body = chat_server.call("POST", "/v1/chat/completions", big, {"Authorization": "Bearer sekret"})
    _check_error(status, body, 413, code="request_too_large")


def test_api_key(chat_server):
    msgs = [{"role": "user", "content": "Hi"}]
    for key in ("wrong", "sekret2"):
        with pytest.raises(openai.AuthenticationError) as e:
            chat_server.client(api_key=key).chat.completions.create(model="tiny-chat", messages=msgs, max_tokens=2)
        assert e.value.status_code == 401 and e.value.body["code"] == "invalid_api_key"
    status, body = chat_server.call("GET", "/v1/models")                      # no header at all
    _check_error(status, body, 401, code="invalid_api_key")
    status, body = chat_server.call("GET", "/v1/models", headers={"Authorization": "Basic sekret"})
    _check_error(status, body, 401, code="invalid_api_key")
    assert chat_server.call("GET", "/health")[0] == 200                      # the page and /health stay open
    r = chat_server.client(api_key="sekret").chat.completions.create(model="tiny-chat", messages=msgs, max_tokens=2)
    assert r.usage.completion_tokens <= 2


def test_openai_client_raises_bad_request_and_server_keeps_serving(stories_server):
    client = stories_server.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="stories", messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=401)
    assert e.value.status_code == 400 and e.value.body["param"] == "max_tokens"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other", prompt="Hi", max_tokens=2)
    r = client.completions.create(model="stories", prompt="Once upon a time", max_tokens=5, temperature=0)
    assert r.choices[0].text and stories_server.wait_idle()["active"] == 0
