"""Talking to a model: ``scratchllm chat`` (terminal), ``scratchllm serve`` (an OpenAI-compatible
HTTP server with a chat page at ``/``).

- ``engine.py``: the only module that touches the model: a scheduler thread with continuous
  batching of concurrent requests (one forward for all active requests per step);
- ``textstream.py``: token ids -> text pieces that never split a UTF-8 character, stop strings;
- ``conversation.py``: chat templates (from ``finetune.chat_template``) and the context policy;
- ``protocol.py``: OpenAI request checking, response objects and errors;
- ``app.py``: the Starlette application (optional extra ``scratchllm[serve]``);
- ``chat.py``: the terminal chat; ``cli.py``: the two commands; ``static/index.html``: the page.

Nothing is imported here; the server's packages are needed only by ``app.py``.
"""
