"""DPO (Rafailov et al. 2023): learn from preference pairs without a reward model.

For a prompt x with a chosen reply y_w and a rejected one y_l, the policy pi and a frozen
reference pi_ref (the model before DPO, or the same model with its LoRA adapters off)::

    r_w = beta * (log pi(y_w|x) - log pi_ref(y_w|x))        the implicit rewards
    r_l = beta * (log pi(y_l|x) - log pi_ref(y_l|x))
    loss = mean over pairs of  -log sigmoid(r_w - r_l)

    d loss / d log pi(y_w|x) = -beta * sigmoid(-(r_w - r_l)) / N,   and + that for y_l

``log pi(y|x)`` is the sum of the reply tokens' log-probabilities (the prompt is not scored).
Logged: the reward margin mean(r_w - r_l) and the accuracy mean(r_w > r_l).

Records: ``{"instruction", "input", "chosen", "rejected"}`` (Raschka's preference set) or
``{"messages": [...prompt...], "chosen": str, "rejected": str}``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..autograd.tensor import Tensor, make_result
from ..backend import xp
from ..errors import ScratchLLMError
from ..nn import functional as F
from .chat_template import ChatTemplate, encode_chat
from .data import IGNORE, make_sample, pad_batch


def _log_sigmoid(z):
    """log sigmoid(z) without overflow: min(z, 0) - log1p(exp(-|z|))."""
    return xp.minimum(z, 0) - xp.log1p(xp.exp(-xp.abs(z)))


def _sigmoid(z):
    return xp.exp(_log_sigmoid(z))


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float = 0.1):
    """Mean DPO loss (a Tensor); policy_* are Tensors (N,) of sequence log-probs, ref_* arrays (N,).

    Returns (loss, stats) with stats = {"reward_margin", "accuracy", "chosen_reward",
    "rejected_reward"} as floats."""
    pc, pr = policy_chosen, policy_rejected
    rc = xp.asarray(ref_chosen.data if isinstance(ref_chosen, Tensor) else ref_chosen)
    rr = xp.asarray(ref_rejected.data if isinstance(ref_rejected, Tensor) else ref_rejected)
    dtype = pc.data.dtype
    beta_ = dtype.type(beta)
    r_w = beta_ * (pc.data - rc.astype(dtype))                        # (N,)
    r_l = beta_ * (pr.data - rr.astype(dtype))
    z = r_w - r_l
    n = z.shape[0]
    out = xp.asarray(-_log_sigmoid(z).mean(), dtype=dtype)

    def backward(g):
        coef = (-beta_ * _sigmoid(-z) / dtype.type(n)) * g             # d loss / d pc, (N,)
        return coef, -coef

    stats = {"reward_margin": float(z.mean()), "accuracy": float((z > 0).mean()),
             "chosen_reward": float(r_w.mean()), "rejected_reward": float(r_l.mean())}
    return make_result(out, (pc, pr), backward, "dpo_loss"), stats


def sequence_logps(model, x, y):
    """Sum over the scored tokens (y != IGNORE) of log p(y_t | x_<=t): a Tensor (B,)."""
    logits = model(x)                                                   # (B, T, vocab)
    nll = F.cross_entropy(logits, y, ignore_index=IGNORE, reduction="none")  # (B, T), 0 on ignored
    return -nll.sum(axis=1)


@dataclass
class PreferencePair:
    chosen: object       # Sample
    rejected: object     # Sample


def encode_preferences(records, template: ChatTemplate, tokenizer, context: int,
                       truncate: bool = False, source: str = "data", names=None) -> list:
    """Preference records -> PreferencePairs (None where truncation left a reply empty)."""
    out = []
    for i, rec in enumerate(records):
        where = names[i] if names else f"{source}: record {i}"
        if not isinstance(rec, dict):
            raise ScratchLLMError(f"{where}: expected a JSON object")
        for key in ("chosen", "rejected"):
            if not isinstance(rec.get(key), str):
                raise ScratchLLMError(f"{where}: missing or non-string field {key!r} "
                                      "(DPO needs chosen and rejected replies)")
        pair = []
        for key in ("chosen", "rejected"):
            if "messages" in rec:
                base = {"messages": rec["messages"]}
            else:
                base = {"instruction": rec.get("instruction"), "input": rec.get("input", ""),
                        "output": ""}
            try:
                msgs = template.messages_from_record(base, where=where)
                if "messages" not in rec:
                    msgs = msgs[:1]
                msgs = msgs + [{"role": "assistant", "content": rec[key]}]
                ids, mask = encode_chat(template, tokenizer, msgs)
            except ValueError as e:
                raise ScratchLLMError(str(e)) from None
            pair.append(make_sample(ids, mask, context, truncate, f"{where} ({key})"))
        out.append(PreferencePair(*pair) if None not in pair else None)
    return out


def pair_batch(pairs) -> tuple:
    """PreferencePairs -> (x, y) (2B, T): the chosen rows first, then the rejected ones."""
    return pad_batch([p.chosen for p in pairs] + [p.rejected for p in pairs])


def reference_logps(model, pairs, batch_size: int = 8):
    """log pi_ref of every pair's chosen and rejected reply, as arrays (N,), (N,); no grad."""
    from ..autograd.grad_mode import no_grad
    chosen, rejected = [], []
    was_training = model.training
    model.eval()
    with no_grad():
        for k in range(0, len(pairs), batch_size):
            part = pairs[k:k + batch_size]
            x, y = pair_batch(part)
            lp = sequence_logps(model, x, y).data
            chosen.append(lp[:len(part)])
            rejected.append(lp[len(part):])
    model.train(was_training)
    return xp.concatenate(chosen), xp.concatenate(rejected)


def dpo_step_loss(model, pairs, ref_chosen, ref_rejected, beta: float):
    """The DPO loss of a batch of pairs (one forward over chosen and rejected rows)."""
    x, y = pair_batch(pairs)
    lp = sequence_logps(model, x, y)                                    # (2B,)
    n = len(pairs)
    return dpo_loss(lp[:n], lp[n:], ref_chosen, ref_rejected, beta)
