"""Containers that register their members: ``ModuleList``, ``ModuleDict``, ``Sequential``.

Members are named by position ("0", "1", ...) or key, so ``layers.0.attention.wq.weight``
comes out of ``named_parameters()`` exactly as in PyTorch.
"""
from __future__ import annotations

from collections import OrderedDict

from .module import Module


class _ModuleSequence(Module):
    """What ModuleList and Sequential share: members in order, iterated as modules."""

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def _renumber(self, items) -> None:
        """Re-register ``items`` as "0", "1", ... (after a delete or an insert)."""
        self._modules.clear()
        for j, m in enumerate(items):
            self.add_module(str(j), m)


class ModuleList(_ModuleSequence):
    """A list of modules, indexed like a list.

    >>> blocks = ModuleList([Linear(4, 4) for _ in range(2)]); len(blocks)
    2
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, i: int) -> int:
        n = len(self._modules)
        if not -n <= i < n:
            raise IndexError(f"ModuleList index {i} is out of range for {n} modules")
        return i % n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ModuleList(list(self._modules.values())[i])
        return self._modules[str(self._index(i))]

    def __setitem__(self, i, module):
        self.add_module(str(self._index(i)), module)

    def __delitem__(self, i):
        items = list(self._modules.values())
        del items[i if isinstance(i, slice) else self._index(i)]
        self._renumber(items)

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module) -> None:
        items = list(self._modules.values())
        items.insert(index, module)
        self._renumber(items)


class ModuleDict(Module):
    """An ordered dict of modules (string keys)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str):
        try:
            return self._modules[key]
        except KeyError:
            raise KeyError(f"ModuleDict has no key '{key}' (keys: {list(self._modules)})") from None

    def __setitem__(self, key: str, module):
        self.add_module(key, module)

    def __delitem__(self, key: str):
        del self._modules[key]

    def __contains__(self, key) -> bool:
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules) -> None:
        pairs = modules.items() if hasattr(modules, "items") else modules
        for k, m in pairs:
            self.add_module(k, m)

    def pop(self, key: str):
        return self._modules.pop(key)


class Sequential(_ModuleSequence):
    """Modules applied one after another: ``Sequential(Linear(2, 8), ReLU(), Linear(8, 1))``.

    Also takes an ``OrderedDict`` name -> module, as torch.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            for k, m in modules[0].items():
                self.add_module(k, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def __getitem__(self, i):
        items = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*items[i])
        if not -len(items) <= i < len(items):
            raise IndexError(f"Sequential index {i} is out of range for {len(items)} modules")
        return items[i]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x
