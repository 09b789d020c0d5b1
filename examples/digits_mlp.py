"""A first neural network: an MLP that reads 8x8 handwritten digits, on scratchllm alone.

scikit-learn ships the digits offline (1797 images, 64 pixels of 0..16 each, labels 0-9);
it is used here only to load them and split train/test. Everything else is scratchllm:
``sl.nn.Linear`` layers, ``F.cross_entropy``, backward, ``AdamW`` and a warmup+cosine schedule.

    python examples/digits_mlp.py --hidden 64 --epochs 30
"""
from __future__ import annotations

import argparse

import numpy as np

import scratchllm as sl
import scratchllm.nn.functional as F
from scratchllm.optim.schedules import set_lr, warmup_cosine


class MLP(sl.nn.Module):
    """64 pixels -> hidden (ReLU) -> hidden (ReLU) -> 10 class logits."""

    def __init__(self, hidden: int):
        super().__init__()
        self.fc1 = sl.nn.Linear(64, hidden)
        self.fc2 = sl.nn.Linear(hidden, hidden)
        self.out = sl.nn.Linear(hidden, 10)

    def forward(self, x):
        h = F.relu(self.fc1(x))            # (B, hidden)
        h = F.relu(self.fc2(h))            # (B, hidden)
        return self.out(h)                 # (B, 10)


def load_data(seed: int):
    """Pixels scaled to [0, 1] (float32) and int64 labels, split 80/20 per class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)       # (1797, 64)
    y = digits.target.astype(np.int64)                # (1797,)
    return train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)


def accuracy(model, x, y) -> float:
    model.eval()
    with sl.no_grad():
        logits = model(sl.Tensor(x))
    model.train()
    return float((logits.numpy().argmax(axis=1) == y).mean())


def train_digits(hidden: int = 64, epochs: int = 30, seed: int = 0, lr: float = 3e-3,
                 batch_size: int = 64, weight_decay: float = 1e-2, verbose: bool = False) -> float:
    """Train the MLP and return its accuracy on the held-out test images."""
    x_train, x_test, y_train, y_test = load_data(seed)
    sl.manual_seed(seed)                               # same seed -> same initial weights
    model = MLP(hidden)
    decay = [p for name, p in model.named_parameters() if name.endswith("weight")]
    no_decay = [p for name, p in model.named_parameters() if name.endswith("bias")]
    opt = sl.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    shuffle = sl.Generator(seed)
    steps_per_epoch = -(-len(x_train) // batch_size)
    max_steps, step = epochs * steps_per_epoch, 0
    for epoch in range(epochs):
        order = shuffle.rng.permutation(len(x_train))
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            set_lr(opt, warmup_cosine(step, lr, warmup_steps=steps_per_epoch, max_steps=max_steps,
                                      min_lr=lr / 10))
            loss = F.cross_entropy(model(sl.Tensor(x_train[idx])), y_train[idx])
            loss.backward()
            opt.step()
            opt.zero_grad()
            step += 1
        if verbose:
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  test accuracy {accuracy(model, x_test, y_test):.4f}")
    return accuracy(model, x_test, y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    acc = train_digits(args.hidden, args.epochs, args.seed, args.lr, verbose=True)
    print(f"test accuracy: {acc:.4f}")


if __name__ == "__main__":
    main()
