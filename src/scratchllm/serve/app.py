"""The OpenAI-compatible HTTP server: Starlette + uvicorn + sse-starlette (``pip install 'scratchllm[serve]'``).

Why this stack: Starlette is the small, well-kept ASGI toolkit (FastAPI is built on it); a server
of four routes needs its routing, requests and responses, not FastAPI's pydantic validation,
whose 422 error format is not OpenAI's (every request is checked by hand in protocol.py so
each mistake gets OpenAI's error object). uvicorn is the reference ASGI server; sse-starlette's
``EventSourceResponse`` does the Server-Sent Events framing and notices a client that went away,
which cancels the stream and so frees the request's slot in the engine.

Routes::

    GET  /                     the chat page (static/index.html)
    GET  /health               {"status": "ok", "batching": ..., "active": n, "waiting": n, ...}
    GET  /v1/models            the one model served
    POST /v1/completions       text completion (prompt)
    POST /v1/chat/completions  chat (messages, rendered with the chat template)

With an API key every /v1 request needs ``Authorization: Bearer KEY`` (the page and /health
stay open: the page asks for the key and sends it with its requests).
"""
from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass
from importlib import resources

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HTTPRequest
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from ..errors import ScratchLLMError
from .conversation import Prompter, end_ids
from .engine import Engine, QueueFull, Request, SamplingParams
from .protocol import (APIError, chat_chunk, chat_completion, check_request, dumps, model_object, new_id,
                       parse_json, text_completion, usage)
from .textstream import Detokenizer, StopMatcher


@dataclass
class ServerState:
    engine: Engine
    tokenizer: object
    prompter: Prompter
    model_id: str
    bos_id: int | None = None
    api_key: str | None = None
    max_tokens: int = 1024              # the most a request may ask for
    max_body_bytes: int = 1 << 20       # the largest request body
    created: int = 0


def _error(e: APIError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


async def _read_body(request: HTTPRequest, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body is larger than {limit} bytes", code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"the request body is larger than {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


class _Generation:
    """One request's way through the engine: token ids from its thread -> text pieces here."""

    def __init__(self, state: ServerState, prompt_ids, params: SamplingParams, stops):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.prompt_tokens = len(prompt_ids)
        self.completion_tokens = 0
        self.finish = None
        self.detok = Detokenizer(state.tokenizer, context=prompt_ids)
        self.stops = StopMatcher(stops)
        self.req = Request(prompt_ids, params, self._emit)
        try:
            state.engine.submit(self.req)
        except QueueFull as e:
            raise APIError(429, str(e), code="server_busy", type="rate_limit_error") from None
        except ScratchLLMError as e:
            raise APIError(400, str(e), code="context_length_exceeded" if "context" in str(e) else None) from None

    def _emit(self, kind, value) -> None:                      # called from the engine's thread
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))
        except RuntimeError:                                    # the event loop is gone
            self.req.cancel()

    async def pieces(self):
        """Yield text pieces until the reply ends; then ``finish`` and the token counts are set."""
        try:
            while self.finish is None:
                kind, value = await self.queue.get()
                if kind == "token":
                    self.completion_tokens += 1
                    text, stopped = self.stops.push(self.detok.push(value))
                    if stopped:
                        self.finish = "stop"
                elif kind == "done":
                    text, stopped = self.stops.push(self.detok.flush())
                    if not stopped:
                        text += self.stops.flush()
                    self.finish = "stop" if stopped or value == "stop" else "length"
                else:
                    raise APIError(500, f"generation failed: {value}", type="server_error")
                if text:
                    yield text
        finally:
            self.req.cancel()                                   # frees the slot (disconnect, stop string)


def _params(state: ServerState, g, n_prompt: int, stop_ids) -> SamplingParams:
    context = state.engine.context
    room = context - n_prompt
    if room < 1:
        raise APIError(400, f"This model's maximum context length is {context} tokens. However, your "
                            f"prompt has {n_prompt} tokens.", param="messages" if g.messages else "prompt",
                       code="context_length_exceeded")
    if g.max_tokens is not None and g.max_tokens > state.max_tokens:
        raise APIError(400, f"max_tokens must be at most {state.max_tokens} on this server, got {g.max_tokens}",
                       param="max_tokens")
    if g.max_tokens is not None and g.max_tokens > room:
        raise APIError(400, f"This model's maximum context length is {context} tokens. However, you requested "
                            f"{n_prompt + g.max_tokens} tokens ({n_prompt} in the prompt, {g.max_tokens} for "
                            f"the completion).", param="max_tokens", code="context_length_exceeded")
    n = g.max_tokens if g.max_tokens is not None else min(room, state.max_tokens)
    return SamplingParams(max_tokens=n, temperature=g.temperature, top_p=g.top_p, top_k=g.top_k,
                          seed=g.seed, stop_ids=frozenset(stop_ids))


async def _watch_disconnect(request: HTTPRequest, gen: _Generation) -> None:
    """Non-streamed requests: cancel the generation when the client goes away."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gen.req.cancel()
            return


def create_app(state: ServerState) -> Starlette:
    state.created = state.created or int(time.time())

    async def index(request):
        page = resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(page)

    async def health(request):
        return JSONResponse({"status": "ok", "model": state.model_id, "batching": state.engine.batching,
                             "context_length": state.engine.context, "max_tokens": state.max_tokens,
                             "decode_steps": state.engine.steps, "rows_stepped": state.engine.rows_stepped,
                             **state.engine.load()})

    async def models(request):
        return JSONResponse({"object": "list", "data": [model_object(state.model_id, state.created)]})

    async def one_model(request):
        if request.path_params["model"] != state.model_id:
            raise APIError(404, f"The model '{request.path_params['model']}' does not exist",
                           param="model", code="model_not_found")
        return JSONResponse(model_object(state.model_id, state.created))

    async def completions(request):
        return await _generate(request, chat=False)

    async def chat_completions(request):
        return await _generate(request, chat=True)

    async def _generate(request, chat: bool):
        g = check_request(parse_json(await _read_body(request, state.max_body_bytes)), chat)
        if g.model != state.model_id:
            raise APIError(404, f"The model '{g.model}' does not exist (this server has '{state.model_id}')",
                           param="model", code="model_not_found")
        if chat:
            try:
                ids = state.prompter.encode(g.messages)
            except ValueError as e:
                raise APIError(400, f"messages: {e}", param="messages") from None
            stop_ids, stops = state.prompter.stop_ids, state.prompter.stop_strings + g.stop
        else:
            if isinstance(g.prompt, str):
                ids = list(state.tokenizer.encode(g.prompt))
                if state.bos_id is not None:
                    ids = [state.bos_id] + ids
            else:
                ids = g.prompt
            if not ids:
                raise APIError(400, "the prompt encodes to no tokens", param="prompt")
            stop_ids, stops = end_ids(state.tokenizer), g.stop
        gen = _Generation(state, ids, _params(state, g, len(ids), stop_ids), stops)
        rid = new_id("chatcmpl" if chat else "cmpl")
        if g.stream:
            return EventSourceResponse(_stream(gen, rid, chat, g.include_usage), ping=15)
        watcher = asyncio.ensure_future(_watch_disconnect(request, gen))
        try:
            text = "".join([piece async for piece in gen.pieces()])
        finally:
            watcher.cancel()
        use = usage(gen.prompt_tokens, gen.completion_tokens)
        if chat:
            return JSONResponse(chat_completion(rid, state.model_id, text, gen.finish, use))
        return JSONResponse(text_completion(rid, state.model_id, int(time.time()), text, gen.finish, use))

    async def _stream(gen: _Generation, rid: str, chat: bool, include_usage: bool):
        created, model = int(time.time()), state.model_id

        def chunk(text=None, finish=None, use=None, last=False):
            if chat:
                delta = None if last else ({} if text is None else {"content": text})
                return dumps(chat_chunk(rid, model, created, delta, finish, use, include_usage))
            return dumps(text_completion(rid, model, created, None if last else (text or ""), finish, use,
                                         include_usage))

        if chat:
            yield {"data": dumps(chat_chunk(rid, model, created, {"role": "assistant", "content": ""},
                                            None, None, include_usage))}
        try:
            async for piece in gen.pieces():
                yield {"data": chunk(piece)}
        except APIError as e:
            yield {"data": dumps(e.body())}
            return
        yield {"data": chunk(finish=gen.finish)}
        if include_usage:
            yield {"data": chunk(use=usage(gen.prompt_tokens, gen.completion_tokens), last=True)}
        yield {"data": "[DONE]"}

    async def api_error(request, exc: APIError):
        return _error(exc)

    async def http_error(request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _error(APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=code))

    routes = [Route("/", index), Route("/health", health), Route("/v1/models", models),
              Route("/v1/models/{model:path}", one_model),
              Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/chat/completions", chat_completions, methods=["POST"])]
    app = Starlette(routes=routes, exception_handlers={APIError: api_error, HTTPException: http_error})
    if state.api_key:
        return _BearerAuth(app, state.api_key)
    return app


class _BearerAuth:
    """ASGI middleware: /v1 requests need ``Authorization: Bearer <key>``."""

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            auth = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, given = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.key):
                err = APIError(401, "Incorrect API key provided. Send 'Authorization: Bearer <key>'.",
                               code="invalid_api_key")
                await _error(err)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def run_server(state: ServerState, host: str, port: int, log_level: str = "warning", ready=None) -> None:
    """Serve until interrupted. ``port`` 0 picks a free port; ``ready(host, port)`` is called once
    the socket listens (the command prints the address there)."""
    import socket

    import uvicorn
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    if ready is not None:
        ready(host, sock.getsockname()[1])
    config = uvicorn.Config(create_app(state), log_level=log_level, access_log=log_level == "info",
                            timeout_graceful_shutdown=2)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        state.engine.close()
        sock.close()


__all__ = ["ServerState", "create_app", "run_server"]
