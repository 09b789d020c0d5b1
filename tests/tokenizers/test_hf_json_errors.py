"""A damaged tokenizer.json gets one clear error (FileFormatError, a ValueError, naming the file),
never a TypeError/KeyError/AttributeError from deep inside: every field of two real-shaped files is
replaced, one at a time, by values of the wrong kind, and the reader must refuse or work."""
import copy
import json
import random

import pytest

from scratchllm.errors import ScratchLLMError
from scratchllm.tokenizers.hf_json import HFTokenizer

from hf_tok_helpers import BUILDERS

WRONG = [None, 0, -1, 1.5, True, "", "x", "Isolated", [], [1], ["a"], [["a"]], {}, {"type": "Fuse"},
         {"String": 1}, {"Regex": "("}, {"type": None}, {"id": {}}]


def _paths(node, prefix=()):
    """Paths to every field (the first entries of lists; vocab and merges as a whole)."""
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("vocab", "merges"):
                yield prefix + (key,)
                if key == "merges":
                    yield prefix + (key, 0)
            else:
                yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node[:3]):
            yield from _paths(value, prefix + (i,))


@pytest.mark.parametrize("kind", ["llama3", "sp-prepend"])
def test_wrong_values_in_any_field_are_refused_clearly(kind):
    spec = json.loads(BUILDERS[kind]().to_str())
    paths = list(_paths(spec))
    rng = random.Random(0)
    for _ in range(400):
        path, value = rng.choice(paths), rng.choice(WRONG)
        bad = copy.deepcopy(spec)
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        try:
            tok = HFTokenizer(bad, "damaged/tokenizer.json")
        except ValueError as exc:                  # FileFormatError is a ValueError
            assert isinstance(exc, ScratchLLMError) and "damaged/tokenizer.json" in str(exc), (path, value, exc)
            continue
        ids = tok.encode("hello <s> world 12 日本", add_special_tokens=True)   # a reader that accepts works
        assert isinstance(tok.decode(ids), str)
