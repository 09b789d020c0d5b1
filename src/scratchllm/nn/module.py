"""``Module``: the base class of every layer and model, as ``torch.nn.Module``.

Assigning a ``Parameter`` or a ``Module`` to an attribute registers it, so
``named_parameters()`` can walk the tree and name every weight with PyTorch's
dotted names:

>>> class Net(Module):
...     def __init__(self):
...         super().__init__()
...         self.fc = Linear(2, 3)
>>> [name for name, _ in Net().named_parameters()]
['fc.weight', 'fc.bias']

``state_dict()`` maps those names to NumPy arrays (sharing memory with the
parameters, as torch's does); ``load_state_dict`` copies arrays back in place,
so an optimizer holding the parameters keeps working.
"""
from __future__ import annotations

from collections import namedtuple

from ..autograd.tensor import Tensor
from ..backend import xp
from ..device import is_device_array, is_device_name, normalize, to_device
from ..errors import ScratchLLMError
from .parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class: subclasses set attributes in ``__init__`` and define ``forward``."""

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})

    # ----------------------------------------------------------- registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign '{name}' before Module.__init__() was called "
                                 f"(call super().__init__() first in {type(self).__name__}.__init__)")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            self._forget(name)
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to parameter '{name}' of "
                                f"{type(self).__name__} (expected a Parameter or None)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to sub-module '{name}' of "
                                f"{type(self).__name__} (expected a Module or None)")
            modules[name] = None
        elif name in buffers:
            buffers[name] = _as_buffer(value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):  # only called when normal lookup fails
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        if not self._forget(name):
            object.__delattr__(self, name)

    def _forget(self, name) -> bool:
        found = False
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                found = True
        self._non_persistent.discard(name)
        if name in self.__dict__:
            object.__delattr__(self, name)
        return found

    def register_parameter(self, name: str, param) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter('{name}'): expected a Parameter or None, got {type(param).__name__}")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """A non-trainable state array (e.g. a RoPE table); ``persistent`` ones go in state_dict."""
        self._forget(name)
        self._buffers[name] = _as_buffer(tensor)
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module('{name}'): expected a Module, got {type(module).__name__}")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    # --------------------------------------------------------------- calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -------------------------------------------------------------- walking
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """(name, module) for self and every descendant, depth first; shared ones once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, store, prefix, recurse, remove_duplicate=True):
        seen = set()
        walk = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mod_prefix, m in walk:
            for name, v in getattr(m, store).items():
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                seen.add(id(v))
                yield mod_prefix + ("." if mod_prefix else "") + name, v

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """(dotted name, Parameter); a parameter shared by two layers (tied weights) comes once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively) and then on self, as torch."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ----------------------------------------------------------------- state
    def state_dict(self, prefix: str = "") -> dict:
        """Dotted name -> NumPy array (shared with the parameter, not a copy), tied names included."""
        out = {}
        for mod_prefix, m in self.named_modules(prefix=prefix, remove_duplicate=False):
            dot = mod_prefix + ("." if mod_prefix else "")
            for name, p in m._parameters.items():
                if p is not None:
                    out[dot + name] = p.data
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[dot + name] = b.data
        return out

    def _state_tensors(self) -> dict:
        out = {}
        for mod_prefix, m in self.named_modules(remove_duplicate=False):
            dot = mod_prefix + ("." if mod_prefix else "")
            for name, p in m._parameters.items():
                if p is not None:
                    out[dot + name] = p
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[dot + name] = b
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays (or Tensors) into the parameters/buffers in place, casting to their dtype.

        Raises one ``ScratchLLMError`` listing every missing key, unexpected key and
        shape mismatch (missing/unexpected only when ``strict``; shape mismatches always).
        Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict: expected a mapping name -> array, got {type(state_dict).__name__}")
        own = self._state_tensors()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = []
        arrays = {}
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            arr = v.data if isinstance(v, Tensor) else (v if is_device_array(v) else xp.asarray(v))
            if arr.shape != t.data.shape:
                mismatched.append(f"{k}: checkpoint shape {tuple(arr.shape)}, model shape {tuple(t.data.shape)}")
            else:
                arrays[k] = arr
        problems = []
        if strict and missing:
            problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched)}")
        if problems:
            raise ScratchLLMError(f"load_state_dict into {type(self).__name__}: " + " | ".join(problems))
        for k, arr in arrays.items():
            own[k].data[...] = to_device(arr, own[k].device)  # in place: identity (and optimizer references) kept
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------ conversions
    def to(self, *args, dtype=None, device=None):
        """Move every parameter and buffer (and grad) to a device, and/or cast the floating-point
        ones to a dtype, in place: ``model.to("cuda")``, ``model.to(sl.float64)``, ``model.to("cpu")``.
        Create the optimizer after moving (its moments are made on the parameters' device)."""
        for a in args:
            if is_device_name(a):
                device = a
            else:
                dtype = a
        if device is not None:
            device = normalize(device)
            for m in self.modules():
                for t in list(m._parameters.values()) + list(m._buffers.values()):
                    if t is not None:
                        t.data = to_device(t.data, device)
                        if t.grad is not None:
                            t.grad.data = to_device(t.grad.data, device)
        if dtype is None:
            return self
        dtype = xp.dtype(dtype)
        for m in self.modules():
            for t in list(m._parameters.values()) + list(m._buffers.values()):
                if t is not None and t.data.dtype.kind == "f" and t.data.dtype != dtype:
                    t.data = t.data.astype(dtype)
                    if t.grad is not None:
                        t.grad.data = t.grad.data.astype(dtype)
        return self

    @property
    def device(self) -> str:
        """Where the first parameter (or buffer) lives, ``"cpu"`` for a module without any."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return "cpu"

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=None):
        return self.to("cuda" if index is None else f"cuda:{int(index)}")

    def float(self):
        return self.to(xp.float32)

    def double(self):
        return self.to(xp.float64)

    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    def num_parameters(self, only_trainable: bool = False) -> int:
        """Number of scalars in the (unique) parameters."""
        return sum(p.data.size for p in self.parameters() if p.requires_grad or not only_trainable)

    # ------------------------------------------------------------------ repr
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        head = type(self).__name__ + "("
        if not self._modules:
            return head + "\n  ".join(lines) + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return list(super().__dir__()) + list(self._parameters) + list(self._buffers) + list(self._modules)


def _as_buffer(value):
    if value is None or isinstance(value, Tensor):
        return value
    return Tensor(xp.asarray(value))
