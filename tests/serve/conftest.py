"""Fixtures of the serving tests: models saved in tmp folders and real server processes
(serve_helpers.py says which and why)."""
import pytest

import scratchllm as sl
from serve_helpers import STORIES, STORIES_TOK, Server, make_model


@pytest.fixture(scope="session")
def chat_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("chat") / "tiny-chat", specials=True, block_size=256, seed=1)


@pytest.fixture(scope="session")
def plain_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("plain") / "tiny-plain", specials=False, block_size=2048, seed=2)


@pytest.fixture(scope="session")
def stories_server():
    s = Server("--model", STORIES, "--tokenizer", STORIES_TOK, "--model-name", "stories", "--max-tokens", 400)
    yield s
    s.close()


@pytest.fixture(scope="session")
def chat_server(chat_model):
    s = Server("--model", chat_model, "--api-key", "sekret", "--max-tokens", 64, "--max-body-bytes", 20000)
    yield s
    s.close()


@pytest.fixture(scope="session")
def plain_server(plain_model):
    s = Server("--model", plain_model, "--max-tokens", 2000)
    yield s
    s.close()


@pytest.fixture(scope="session")
def stories_tok():
    return sl.load_tokenizer(str(STORIES_TOK))
