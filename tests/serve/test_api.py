"""The OpenAI API as the official ``openai`` client sees it, against a real server process."""
from scratchllm.finetune.chat_template import get_template

# llama2.c's run.c, greedy, prompt "Once upon a time" (../shared/data/README.md)
STORY = ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."
CHAT = [{"role": "system", "content": "You tell short stories."},
        {"role": "user", "content": "Tell me about a dog."}]


def test_models_list_and_retrieve(stories_server):
    client = stories_server.client()
    models = client.models.list()
    assert [m.id for m in models.data] == ["stories"]
    assert models.data[0].object == "model" and models.data[0].owned_by == "scratchllm"
    assert client.models.retrieve("stories").id == "stories"


def test_completion_greedy_is_the_known_story(stories_server, stories_tok):
    r = stories_server.client().completions.create(model="stories", prompt="Once upon a time", max_tokens=30,
                                                   temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert STORY.startswith(r.choices[0].text) and len(r.choices[0].text) > 60
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(stories_tok.encode("Once upon a time", bos=True))
    assert r.usage.completion_tokens == 30 and r.usage.total_tokens == r.usage.prompt_tokens + 30


def test_completion_stream_equals_non_stream(stories_server):
    client = stories_server.client()
    args = dict(model="stories", prompt="One day, a cat", max_tokens=40, temperature=0)
    whole = client.completions.create(**args)
    chunks = list(client.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == "length" and set(finals[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_chat_stream_equals_non_stream_and_usage(stories_server, stories_tok):
    client = stories_server.client()
    whole = client.chat.completions.create(model="stories", messages=CHAT, max_tokens=25, temperature=0)
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    msg = whole.choices[0].message
    assert msg.role == "assistant" and len(msg.content) > 20
    # the tokenizer's count: ChatML rendered as text (stories' vocabulary has no <|im_start|>), after <s>
    prompt = get_template("chatml").render(CHAT, add_generation_prompt=True)
    assert whole.usage.prompt_tokens == len(stories_tok.encode(prompt, bos=True))
    assert whole.usage.completion_tokens == 25 and whole.choices[0].finish_reason == "length"

    chunks = list(client.chat.completions.create(model="stories", messages=CHAT, max_tokens=25, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant" and not chunks[0].choices[0].delta.content
    body = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in body) == msg.content
    assert body[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_usage_has_no_usage_chunk(stories_server):
    chunks = list(stories_server.client().chat.completions.create(
        model="stories", messages=CHAT, max_tokens=5, temperature=0, stream=True))
    assert all(c.choices for c in chunks) and chunks[-1].choices[0].finish_reason == "length"


def test_stop_strings(stories_server):
    client = stories_server.client()
    r = client.completions.create(model="stories", prompt="Once upon a time", max_tokens=40, temperature=0,
                                  stop=["Lily", "zebra"])
    assert r.choices[0].text == ", there was a little girl named " and r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < 40
    chunks = list(client.completions.create(model="stories", prompt="Once upon a time", max_tokens=40,
                                            temperature=0, stop="Lily", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == r.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "stop"
    # a stop string that spans several tokens and starts inside one
    r2 = client.completions.create(model="stories", prompt="Once upon a time", max_tokens=40, temperature=0,
                                   stop=["ittle gi"])
    assert r2.choices[0].text == ", there was a l"


def test_end_of_text_token_stops_with_finish_stop(stories_server):
    # stories260K ends a story with <s> (id 1): the reply stops there, finish_reason "stop"
    r = stories_server.client().completions.create(model="stories", prompt="Once upon a time", max_tokens=400,
                                                   temperature=0)
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 341
    assert r.choices[0].text.startswith(STORY)


def test_seed_reproducibility(stories_server):
    client = stories_server.client()
    args = dict(model="stories", messages=CHAT, max_tokens=30, temperature=1.0, top_p=0.95)
    a = client.chat.completions.create(**args, seed=1234).choices[0].message.content
    b = client.chat.completions.create(**args, seed=1234).choices[0].message.content
    others = {client.chat.completions.create(**args, seed=s).choices[0].message.content for s in (1, 2, 3)}
    assert a == b and len(others | {a}) > 1
    streamed = client.chat.completions.create(**args, seed=1234, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == a


def test_max_completion_tokens_and_token_prompt(stories_server, stories_tok):
    client = stories_server.client()
    r = client.chat.completions.create(model="stories", messages=CHAT, max_completion_tokens=3, temperature=0)
    assert r.usage.completion_tokens == 3
    ids = stories_tok.encode("Once upon a time", bos=True)
    r = client.completions.create(model="stories", prompt=ids, max_tokens=30, temperature=0)
    assert STORY.startswith(r.choices[0].text) and r.usage.prompt_tokens == len(ids)


def test_chat_template_special_tokens_end_the_reply(chat_server, chat_model):
    """The tiny model's tokenizer has ChatML's tokens: the prompt holds their single ids (usage),
    and the reply ends where the model emits <|im_end|> (finish_reason "stop", the token not shown)."""
    import scratchllm as sl
    from scratchllm.finetune.chat_template import encode_chat
    from scratchllm.serve.engine import SamplingParams, generate_ids
    tok = sl.load_tokenizer(str(chat_model))
    client = chat_server.client(api_key="sekret")
    for text in ("Héllo wörld 🙂", "café"):          # (greedy: the second reply reaches <|im_end|>)
        msgs = [{"role": "user", "content": text}]
        prompt = encode_chat(get_template("chatml"), tok, msgs, add_generation_prompt=True)[0]
        free, _ = generate_ids(sl.load_model(str(chat_model)), prompt, SamplingParams(max_tokens=60, temperature=0))
        ends = [k for k, t in enumerate(free) if t in (tok.special_tokens["<|im_end|>"], tok.eos_id)]
        r = client.chat.completions.create(model="tiny-chat", messages=msgs, max_tokens=60, temperature=0)
        assert r.usage.prompt_tokens == len(prompt)
        assert (r.choices[0].finish_reason, r.usage.completion_tokens) == (("stop", ends[0]) if ends else ("length", 60))
        assert r.choices[0].message.content == tok.decode(free[:r.usage.completion_tokens])
        streamed = client.chat.completions.create(model="tiny-chat", messages=msgs, max_tokens=60, temperature=0,
                                                  stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == r.choices[0].message.content
    assert ends, "the second reply was meant to reach <|im_end|>"
