"""Step 1 of the teaching path: a neural network made of single numbers.

Every weight is a ``Scalar``; every +, * and tanh builds one node of the graph;
``loss.backward()`` runs the chain rule over that graph and leaves dLoss/dWeight
in each weight's ``.grad``; gradient descent then nudges each weight against it.

    python examples/scalar_mlp.py

The data is the four-example set from micrograd: three inputs, a target of +1 or -1.
"""
import random

import scratchllm as sl


class Neuron:
    """tanh(w . x + b), or just w . x + b for the output layer."""

    def __init__(self, n_in, rng, nonlin=True):
        self.w = [sl.Scalar(rng.uniform(-1, 1)) for _ in range(n_in)]
        self.b = sl.Scalar(0.0)
        self.nonlin = nonlin

    def __call__(self, x):
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.tanh() if self.nonlin else act

    def parameters(self):
        return self.w + [self.b]


class MLP:
    """Layers of neurons: sizes [3, 4, 4, 1] is 3 inputs, two hidden layers of 4, 1 output."""

    def __init__(self, sizes, seed=0):
        rng = random.Random(seed)
        self.layers = [[Neuron(sizes[i], rng, nonlin=i < len(sizes) - 2) for _ in range(sizes[i + 1])]
                       for i in range(len(sizes) - 1)]

    def __call__(self, x):
        for layer in self.layers:
            x = [neuron(x) for neuron in layer]
        return x[0] if len(x) == 1 else x

    def parameters(self):
        return [p for layer in self.layers for n in layer for p in n.parameters()]


def train(steps=50, lr=0.01, seed=0, log=print):
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    ys = [1.0, -1.0, -1.0, 1.0]
    model = MLP([3, 4, 4, 1], seed)
    log(f"{len(model.parameters())} parameters, each a Scalar")
    losses = []
    for step in range(steps):
        preds = [model(x) for x in xs]                                     # forward: builds the graph
        loss = sum(((p - y) ** 2 for p, y in zip(preds, ys)), sl.Scalar(0.0))  # squared error
        for p in model.parameters():
            p.grad = 0.0                                                   # grads accumulate: reset
        loss.backward()                                                    # the chain rule, backwards
        for p in model.parameters():
            p.data -= lr * p.grad                                          # one step downhill
        losses.append(loss.data)
        if step % 5 == 0 or step == steps - 1:
            log(f"step {step:3d}  loss {loss.data:.4f}")
    final = [round(model(x).data, 3) for x in xs]
    log(f"predictions {final}  targets {ys}")
    return losses, final


if __name__ == "__main__":
    train()
