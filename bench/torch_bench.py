#!/usr/bin/env python3
"""bench/torch_bench.py — the reference models in PyTorch, timed like bpcc's.

Run by `make bench` with /usr/bin/python3 (Debian's python3-torch). The thread count is
set through the environment before torch is imported (Debian's torch uses OpenBLAS,
whose threads torch.set_num_threads does not control): OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS and OMP_WAIT_POLICY=PASSIVE. The OpenBLAS kernel set is the
caller's: bench/run.sh sets OPENBLAS_CORETYPE (or unsets it) for this process to what
bench/blas_pick.py chose. Prints the kernel set OpenBLAS runs, then one line per model:
    blas_core CORE            (openblas_get_corename; "-" when torch's BLAS is not OpenBLAS)
    torch MODEL ms_median ms_min ms_max peak_rss_mib
and for M4 (LeNet-5: torch.nn.Conv2d, which on CPU runs on oneDNN when torch has it)
    torch_conv mkldnn_available MKLDNN_ENABLED THREADS OPS
with torch.backends.mkldnn.is_available() and .enabled (1/0), torch.get_num_threads(),
and the aten convolution kernels one step ran, from torch.autograd.profiler after the
timed steps (e.g. "aten::mkldnn_convolution,aten::convolution_backward"), so that the
table says which implementation bpcc was compared with.
"""
import os
import sys

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 30
only = sys.argv[3].split(",") if len(sys.argv) > 3 else ["m1", "m2", "m3", "m4"]
for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[k] = str(threads)
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

try:
    import torch  # noqa: E402
except ImportError:
    print("torch unavailable: python3-torch does not import here")
    sys.exit(0)

from blas_pick import openblas_core  # noqa: E402  (bench/, the script's directory)

torch.set_num_threads(threads)
torch.manual_seed(0)
print("blas_core", openblas_core() or "-")


def mlp(sizes, act):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return torch.nn.Sequential(*layers)


def models():
    # M1: 784-256-10, ReLU, softmax CE, batch 64, SGD lr 0.1
    m1 = mlp([784, 256, 10], torch.nn.ReLU)
    yield "m1", m1, torch.optim.SGD(m1.parameters(), lr=0.1), 64, 784, ("ce", 10)
    # M2: 784-1024-1024-10, ReLU, softmax CE, batch 128, Adam lr 1e-3
    m2 = mlp([784, 1024, 1024, 10], torch.nn.ReLU)
    yield "m2", m2, torch.optim.Adam(m2.parameters(), lr=1e-3), 128, 784, ("ce", 10)
    # M3: 512-(16 x 512 tanh)-512, MSE, batch 256, SGD momentum 0.9
    m3 = mlp([512] + [512] * 16 + [512], torch.nn.Tanh)
    yield "m3", m3, torch.optim.SGD(m3.parameters(), lr=0.01, momentum=0.9), 256, 512, ("mse", 512)
    # M4: LeNet-5 (conv 6@5x5 pad 2, ReLU, max pool 2, conv 16@5x5, ReLU, max pool 2,
    # dense 120, 84, 10), softmax CE, batch 64, SGD lr 0.01 momentum 0.9
    nn = torch.nn
    m4 = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                       nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    yield "m4", m4, torch.optim.SGD(m4.parameters(), lr=0.01, momentum=0.9), 64, (1, 28, 28), ("ce", 10)


def conv_kernels(step):
    """The aten convolution ops one step runs (oneDNN's is aten::mkldnn_convolution)."""
    with torch.autograd.profiler.profile() as prof:
        step()
    names = sorted({e.key for e in prof.key_averages() if "conv" in e.key})
    return ",".join(names) or "-"


def main():
    for name, model, opt, batch, nin, (loss_kind, nout) in models():
        if name not in only:
            continue
        x = torch.rand(batch, *(nin if isinstance(nin, tuple) else (nin,)))
        if loss_kind == "ce":
            y = torch.randint(0, nout, (batch,))
            lossf = torch.nn.CrossEntropyLoss()
        else:
            y = torch.rand(batch, nout)
            lossf = torch.nn.MSELoss()

        def step():
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(x), y)
            loss.backward()
            opt.step()

        for _ in range(5):
            step()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(f"torch {name} {statistics.median(times):.3f} {min(times):.3f} {max(times):.3f} {rss:.1f}")
        if name == "m4":
            mk = torch.backends.mkldnn
            print(f"torch_conv {int(mk.is_available())} {int(mk.enabled)} {torch.get_num_threads()} {conv_kernels(step)}")
        sys.stdout.flush()


main()
