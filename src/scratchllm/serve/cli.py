"""``scratchllm chat`` and ``scratchllm serve``.

    scratchllm chat  --model PATH [--system TEXT] [--template NAME] [--temperature T] ...
    scratchllm serve --model PATH [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--slots 8] ...
"""
import os
import sys

from ..errors import ScratchLLMError


def _model_args(p) -> None:
    p.add_argument("--model", required=True, help="HF / Meta / scratchllm folder, or a llama2.c .bin")
    p.add_argument("--tokenizer", default=None, help="tokenizer path or name (default: found beside the model)")
    p.add_argument("--template", default=None,
                   help="chat template: chatml, llama3, alpaca, or an HF folder / tokenizer_config.json "
                        "(default: the model's own, else chosen from the tokenizer's special tokens)")


def add_serve_commands(subparsers) -> None:
    c = subparsers.add_parser("chat", help="talk to a model in the terminal (streams the reply; /help)")
    _model_args(c)
    c.add_argument("--system", default=None, help="system prompt")
    c.add_argument("--temperature", type=float, default=0.7, help="0 = greedy")
    c.add_argument("--top-k", type=int, default=None)
    c.add_argument("--top-p", type=float, default=None)
    c.add_argument("--seed", type=int, default=None)
    c.add_argument("--max-tokens", type=int, default=256, help="the longest reply, in tokens")
    c.set_defaults(func=run_chat)

    s = subparsers.add_parser("serve", help="an OpenAI-compatible HTTP server with a chat page at /")
    _model_args(s)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (0: a free one, printed at start)")
    s.add_argument("--api-key", default=os.environ.get("SCRATCHLLM_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1 (default: $SCRATCHLLM_API_KEY)")
    s.add_argument("--model-name", default=None, help="the model id clients use (default: the path's name)")
    s.add_argument("--slots", type=int, default=8, help="requests decoded together (the rest wait in a queue)")
    s.add_argument("--max-queue", type=int, default=64, help="requests that may wait; more get HTTP 429")
    s.add_argument("--max-tokens", type=int, default=1024, help="the most tokens one request may ask for")
    s.add_argument("--max-body-bytes", type=int, default=1 << 20, help="the largest request body")
    s.add_argument("--batching", choices=("auto", "on", "off"), default="auto",
                   help="continuous batching of concurrent requests (auto: if the model's decoder allows)")
    s.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    s.set_defaults(func=run_serve)


def run_chat(args) -> int:
    from .chat import chat_loop
    return chat_loop(args)


def run_serve(args) -> int:
    try:
        from .app import ServerState, run_server
    except ImportError as e:
        raise ScratchLLMError(f"scratchllm serve needs the package {e.name!r}: "
                              "pip install 'scratchllm[serve]'") from None
    from .conversation import Prompter, choose_template
    from .engine import Engine, load
    if args.max_tokens < 1 or args.slots < 1:
        raise ScratchLLMError("--max-tokens and --slots must be at least 1")
    model, tok, bos = load(args.model, args.tokenizer)
    template = choose_template(args.template, args.model, tok)
    engine = Engine(model, slots=args.slots, max_queue=args.max_queue, batching=args.batching).start()
    name = args.model_name or os.path.basename(os.path.normpath(args.model))
    if not args.model_name and os.path.isfile(args.model):
        name = os.path.splitext(name)[0]                    # stories260K.bin -> stories260K
    state = ServerState(engine=engine, tokenizer=tok, prompter=Prompter(template, tok, bos), model_id=name,
                        bos_id=bos, api_key=args.api_key or None, max_tokens=args.max_tokens,
                        max_body_bytes=args.max_body_bytes)

    def ready(host, port):
        shown = f"[{host}]" if ":" in host else host
        print(f"scratchllm serve: model {name!r} (template {template.name}, {engine.batching}, "
              f"{args.slots} slots) on http://{shown}:{port}", flush=True)
        if args.batching == "auto" and engine.backend_reason != "probe passed":
            print(f"scratchllm serve: no batching: {engine.backend_reason}", file=sys.stderr, flush=True)

    run_server(state, args.host, args.port, args.log_level, ready)
    return 0
