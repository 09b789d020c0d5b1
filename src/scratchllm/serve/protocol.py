"""The OpenAI API's request fields, response objects and errors (no web framework here).

Requests are checked by hand, field by field, so that every problem becomes the error body the
``openai`` client expects (``{"error": {"message", "type", "param", "code"}}`` with a 4xx status)
rather than a framework's own validation format. Fields that do not apply to this server
(``logprobs``, ``tools``, penalties, ``n`` > 1, ...) are accepted at their neutral value and
refused clearly otherwise; unknown fields are refused, as OpenAI does.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field


class APIError(Exception):
    """An error the client sees: HTTP ``status`` and OpenAI's error object."""

    def __init__(self, status: int, message: str, param=None, code=None, type="invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# ------------------------------------------------------------------------------ requests
@dataclass
class GenerationRequest:
    """What both endpoints ask for, checked."""
    model: str
    prompt: object = None                 # completions: str or list of ids
    messages: list = field(default_factory=list)
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple = ()
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False


_SAMPLING = {"model", "max_tokens", "temperature", "top_p", "top_k", "stop", "seed", "n", "stream",
             "stream_options", "logprobs", "frequency_penalty", "presence_penalty", "logit_bias", "user"}
CHAT_FIELDS = _SAMPLING | {"messages", "max_completion_tokens", "top_logprobs", "response_format", "tools",
                           "tool_choice", "functions", "function_call", "parallel_tool_calls", "metadata",
                           "store", "service_tier", "modalities"}
COMPLETION_FIELDS = _SAMPLING | {"prompt", "echo", "suffix", "best_of"}


def parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise APIError(400, f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _opt(body: dict, key: str, check, what: str, default=None):
    """body[key] if present and not null, after ``check(value)``; else ``default``."""
    v = body.get(key)
    if v is None:
        return default
    if not check(v):
        raise APIError(400, f"'{key}' must be {what}, got {json.dumps(v)[:80]}", param=key)
    return v


def _neutral(body: dict, key: str, ok, why: str) -> None:
    """Fields this server does not implement: fine at their neutral value, refused otherwise."""
    v = body.get(key)
    if v is not None and not ok(v):
        raise APIError(400, f"'{key}' is not supported by this server ({why})", param=key)


def check_request(body: dict, chat: bool) -> GenerationRequest:
    known = CHAT_FIELDS if chat else COMPLETION_FIELDS
    unknown = sorted(set(body) - known)
    if unknown:
        raise APIError(400, f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "'model' is required and must be a string", param="model")
    req = GenerationRequest(model=model)
    if chat:
        req.messages = check_messages(body.get("messages"))
        req.max_tokens = _opt(body, "max_completion_tokens", _is_int, "an integer")
        if req.max_tokens is None:
            req.max_tokens = _opt(body, "max_tokens", _is_int, "an integer")
    else:
        req.prompt = check_prompt(body.get("prompt"))
        req.max_tokens = _opt(body, "max_tokens", _is_int, "an integer", 16)
    if req.max_tokens is not None and req.max_tokens < 1:
        raise APIError(400, f"max_tokens must be at least 1, got {req.max_tokens}", param="max_tokens")
    req.temperature = float(_opt(body, "temperature", lambda v: _is_num(v) and 0 <= v <= 2,
                                 "a number from 0 to 2", 1.0))
    req.top_p = _opt(body, "top_p", lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]")
    req.top_k = _opt(body, "top_k", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    req.seed = _opt(body, "seed", _is_int, "an integer")
    req.stream = _opt(body, "stream", lambda v: isinstance(v, bool), "a boolean", False)
    stop = _opt(body, "stop", lambda v: isinstance(v, str) or (
        isinstance(v, list) and len(v) <= 4 and all(isinstance(s, str) for s in v)),
        "a string or a list of at most 4 strings", ())
    req.stop = (stop,) if isinstance(stop, str) else tuple(s for s in stop if s)
    opts = _opt(body, "stream_options", lambda v: isinstance(v, dict) and set(v) <= {"include_usage"}
                and isinstance(v.get("include_usage", False), bool), 'an object {"include_usage": bool}', {})
    if opts and not req.stream:
        raise APIError(400, "'stream_options' is only allowed when 'stream' is true", param="stream_options")
    req.include_usage = bool(opts.get("include_usage", False))
    _opt(body, "n", _is_int, "an integer")
    _neutral(body, "n", lambda v: v == 1, "one choice per request: n must be 1")
    _opt(body, "user", lambda v: isinstance(v, str), "a string")
    for key in ("frequency_penalty", "presence_penalty"):
        _opt(body, key, lambda v: _is_num(v) and -2 <= v <= 2, "a number from -2 to 2")
        _neutral(body, key, lambda v: v == 0, "only 0")
    _opt(body, "logit_bias", lambda v: isinstance(v, dict), "an object")
    _neutral(body, "logit_bias", lambda v: not v, "it must be empty")
    if chat:
        _opt(body, "logprobs", lambda v: isinstance(v, bool), "a boolean")
        _neutral(body, "logprobs", lambda v: v is False, "log-probabilities are not returned")
        _neutral(body, "top_logprobs", lambda v: v == 0, "log-probabilities are not returned")
        _neutral(body, "response_format", lambda v: v == {"type": "text"}, 'only {"type": "text"}')
        for key in ("tools", "functions"):
            _neutral(body, key, lambda v: v == [], "no tool calling")
        for key in ("tool_choice", "function_call"):
            _neutral(body, key, lambda v: v == "none", "no tool calling")
        _neutral(body, "modalities", lambda v: v == ["text"], "text only")
    else:
        _opt(body, "logprobs", _is_int, "an integer")
        _neutral(body, "logprobs", lambda v: v == 0, "log-probabilities are not returned")
        _neutral(body, "echo", lambda v: v is False, "the prompt is not echoed")
        _neutral(body, "suffix", lambda v: v == "", "no insertion")
        _neutral(body, "best_of", lambda v: v == 1, "best_of must be 1")
    return req


def check_messages(messages) -> list:
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise APIError(400, f"{where} must be an object", param=where)
        role, content = m.get("role"), m.get("content")
        if role == "developer":                       # OpenAI's newer name for the system role
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise APIError(400, f"{where}.role must be 'system', 'user' or 'assistant', got {json.dumps(role)}",
                           param=f"{where}.role")
        if isinstance(content, list):                 # [{"type": "text", "text": ...}, ...]
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise APIError(400, f"{where}.content: only text parts are supported", param=f"{where}.content")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise APIError(400, f"{where}.content must be a string", param=f"{where}.content")
        out.append({"role": role, "content": content})
    return out


def check_prompt(prompt):
    """A string, a list of one string, a list of token ids, or a list of one list of ids."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(_is_int(t) for t in prompt):
        return list(prompt)
    raise APIError(400, "'prompt' must be a string or a list of token ids (one prompt per request)",
                   param="prompt")


# ----------------------------------------------------------------------------- responses
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_completion(rid, model, text, finish, use) -> dict:
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": finish}],
            "usage": use}


def chat_chunk(rid, model, created, delta=None, finish=None, use=None, include_usage=False) -> dict:
    """A ``chat.completion.chunk``; ``delta=None`` with ``use`` is the final usage-only chunk."""
    out = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
           "system_fingerprint": None,
           "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                                 "finish_reason": finish}]}
    if include_usage:
        out["usage"] = use
    return out


def text_completion(rid, model, created, text, finish, use=None, include_usage=True) -> dict:
    """A ``text_completion`` (also each streamed chunk; ``text=None`` is the usage-only chunk)."""
    out = {"id": rid, "object": "text_completion", "created": created, "model": model,
           "system_fingerprint": None,
           "choices": [] if text is None else [{"index": 0, "text": text, "logprobs": None,
                                                "finish_reason": finish}]}
    if include_usage:
        out["usage"] = use
    return out


def model_object(model_id: str, created: int) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "scratchllm"}


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
