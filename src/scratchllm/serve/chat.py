"""``scratchllm chat``: a terminal conversation with a model, its reply streamed token by token.

    >>> Hi there!
    Hello! How can I help?
    >>> /temperature 0
    (temperature 0.0)

Commands: /reset (forget the conversation, keep the system prompt), /system [TEXT] (show or set
the system prompt), /temperature [T] (show or set), /help, /quit. Ctrl-C stops a reply (what was
said so far stays in the conversation); Ctrl-D leaves. When the conversation outgrows the
model's context the oldest turns are dropped, never the system prompt (conversation.py).
"""
import sys

from ..errors import ScratchLLMError

HELP = ("commands: /reset  /system [TEXT]  /temperature [T]  /help  /quit   "
        "(Ctrl-C stops a reply, Ctrl-D leaves)")


class ChatSession:
    """The conversation and the settings; ``reply(text, write)`` streams one answer."""

    def __init__(self, engine, prompter, tokenizer, system=None, temperature=0.7, top_k=None, top_p=None,
                 seed=None, max_tokens=256):
        self.engine, self.prompter, self.tok = engine, prompter, tokenizer
        self.system, self.temperature, self.top_k, self.top_p = system, temperature, top_k, top_p
        self.seed, self.max_tokens = seed, max_tokens
        self.history: list = []          # user/assistant messages (the system prompt is kept apart)
        self.turns = 0

    def messages(self, user_text: str) -> list:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history + [{"role": "user", "content": user_text}]

    def reply(self, user_text: str, write) -> str:
        """Stream the answer to ``user_text`` through ``write``; -> "stop" | "length" | "interrupted"."""
        from .engine import SamplingParams, generate_ids
        from .textstream import Detokenizer, StopMatcher
        context = self.engine.context
        room = min(self.max_tokens, max(1, context // 2))
        kept, ids = self.prompter.fit(self.messages(user_text), context, room)
        self.history = [m for m in kept if m["role"] != "system"][:-1]     # dropped turns stay dropped
        params = SamplingParams(max_tokens=min(self.max_tokens, context - len(ids)), temperature=self.temperature,
                                top_k=self.top_k, top_p=self.top_p,
                                seed=None if self.seed is None else self.seed + self.turns,
                                stop_ids=self.prompter.stop_ids)
        detok, stops = Detokenizer(self.tok, context=ids), StopMatcher(self.prompter.stop_strings)
        said, stopped = [], [False]

        def on_token(t):
            text, hit = stops.push(detok.push(t))
            stopped[0] |= hit
            if text:
                said.append(text)
                write(text)

        self.turns += 1
        try:
            _, finish = generate_ids(self.engine, ids, params, on_token, stop_flag=lambda: stopped[0])
            if not stopped[0]:
                text, hit = stops.push(detok.flush())
                text += "" if hit else stops.flush()
                if text:
                    said.append(text)
                    write(text)
        except KeyboardInterrupt:
            finish = "interrupted"
        self.history += [{"role": "user", "content": user_text}, {"role": "assistant", "content": "".join(said)}]
        return "stop" if stopped[0] else finish

    def command(self, line: str, say) -> bool:
        """Run a /command; False means leave."""
        name, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/reset":
            self.history = []
            say("(conversation cleared)")
        elif name == "/system":
            if arg:
                self.system = arg
            say(f"(system prompt: {self.system!r})" if self.system else "(no system prompt)")
        elif name == "/temperature":
            if arg:
                try:
                    t = float(arg)
                    if not t >= 0:
                        raise ValueError
                    self.temperature = t
                except ValueError:
                    say(f"(temperature must be a number >= 0, got {arg!r})")
                    return True
            say(f"(temperature {self.temperature})")
        else:
            say(HELP if name == "/help" else f"(unknown command {name}; {HELP})")
        return True


def chat_loop(args, read=input, out=None) -> int:
    from .conversation import Prompter, choose_template
    from .engine import Engine, load
    out = out or sys.stdout
    if args.max_tokens < 1:
        raise ScratchLLMError("--max-tokens must be at least 1")
    model, tok, bos = load(args.model, args.tokenizer)
    template = choose_template(args.template, args.model, tok)
    session = ChatSession(Engine(model, slots=1), Prompter(template, tok, bos), tok, args.system,
                          args.temperature, args.top_k, args.top_p, args.seed, args.max_tokens)

    def write(text):
        out.write(text)
        out.flush()

    def say(text):
        write(text + "\n")

    say(f"scratchllm chat: {args.model} (template {template.name}, context {model.context_length} tokens). "
        "/help for commands, Ctrl-D to leave.")
    while True:
        try:
            line = read(">>> ")
        except EOFError:
            say("")
            return 0
        except KeyboardInterrupt:
            say("\n(Ctrl-D or /quit to leave)")
            continue
        if line.startswith("/"):
            if not session.command(line, say):
                return 0
            continue
        if not line.strip():
            continue
        try:
            finish = session.reply(line, write)
        except ScratchLLMError as e:
            say(f"(error: {e})")
            continue
        say(" [stopped]" if finish == "interrupted" else "")
