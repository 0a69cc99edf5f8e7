#!/usr/bin/env python3
"""examples/python/spiral.py — train examples/spiral.bp from Python, then predict.

    bpcc examples/spiral.bp -o spiral.so          # the model as a library (+ spiral.h)
    python3 examples/python/spiral.py ./spiral.so [--epochs N] [--save PATH]

NumPy and the library only (bpcc_model.py, beside this file, is the ctypes wrapper).
It makes three-armed spiral data, trains with mini-batches of 32 in shuffled order
(Adam at 0.01, the `train` block's settings, which the library carries), prints the
loss per epoch, saves a checkpoint, loads it into a second model object, and
classifies held-out points with both. It ends with "ok: ..." when the held-out
accuracy is at least 90% and the two objects agree exactly, else exits with status 1.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpcc_model import BpccError, Model  # noqa: E402


def spiral(n, classes=3, noise=0.3, seed=0):
    """n points per arm: x float32 [n * classes, 2], y int32 [n * classes]."""
    rng = np.random.default_rng(seed)
    r = np.tile(np.linspace(0.05, 1, n), classes)
    a = np.repeat(np.arange(classes) * 4.0, n) + r * 4 + rng.normal(0, noise, n * classes)
    x = np.stack([r * np.sin(a), r * np.cos(a)], 1).astype(np.float32)
    return x, np.repeat(np.arange(classes), n).astype(np.int32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("library", help="the .so that `bpcc examples/spiral.bp -o spiral.so` wrote")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--save", default="spiral-python.safetensors", help="checkpoint path")
    args = ap.parse_args()

    x, y = spiral(100, seed=0)
    xv, yv = spiral(50, seed=1)
    net = Model(args.library, seed=1)
    print("model %s: inputs %s, outputs %s, lr %g" % (
        net.name, [t["name"] for t in net.inputs], [t["name"] for t in net.outputs], net.get_hyper("lr")))
    print("parameters: " + ", ".join("%s %s" % (k, list(v.shape)) for k, v in net.params().items()))

    # train: shuffled mini-batches, as `bpcc train` would
    rng = np.random.default_rng(2)
    batch = 32
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x))
        total = 0.0
        for s in range(0, len(x), batch):
            idx = order[s:s + batch]
            total += net.train_step(x[idx], y[idx]) * len(idx)
        if epoch == 1 or epoch % 10 == 0 or epoch == args.epochs:
            print("epoch %3d  train loss %.4f  held-out loss %.4f" % (epoch, total / len(x), net.evaluate(xv, yv)))

    # predict, then the same from a checkpoint in a second object
    pred = net.forward(xv)["probs"].argmax(1)
    acc = (pred == yv).mean()
    net.save(args.save)
    again = Model(args.library, seed=99)
    again.load(args.save)
    same = np.array_equal(again.forward(xv)["probs"], net.forward(xv)["probs"])
    print("held-out accuracy %.2f%% after %d steps; reloaded from %s: %s" % (
        100 * acc, net.step, args.save, "identical predictions" if same else "DIFFERENT predictions"))

    # a mistake gets the library's message, not a crash
    try:
        net.train_step(x[:4], np.array([0, 1, 2, 7]))
    except BpccError as e:
        print("a bad label: %s" % e)

    if acc < 0.9 or not same:
        print("FAIL: accuracy %.2f%% (at least 90%% expected) or the reloaded model differs" % (100 * acc))
        return 1
    print("ok: held-out accuracy %.2f%%" % (100 * acc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
