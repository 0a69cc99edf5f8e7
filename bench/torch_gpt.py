#!/usr/bin/env python3
"""bench/torch_gpt.py — issue 14's tinygpt recipe in PyTorch: the reference bpcc's
examples/tinygpt.bp and bench/m5_gpt.bp are held to.

Run with Debian's python3-torch (/usr/bin/python3). Two modes:

    torch_gpt.py train [--data FILE] [--steps 2000] [--eval-every 200] [--threads 2] [--seed 0]
        the whole recipe on the bytes of FILE (default ../shared/data/fortunes/fortunes.txt
        from the repository root): prints the validation loss before training and every
        --eval-every steps and at the last step, in nats/char and bits/char, then the
        wall time (bench/README.md records a run)
    torch_gpt.py bench THREADS STEPS
        M5 of `make bench` (bench/run.sh), timed as bench/torch_bench.py times M1-M4: 5
        warm-up steps, then STEPS timed steps one by one on one batch of random token ids;
        prints
            blas_core CORE
            torch m5 ms_median ms_min ms_max peak_rss_mib

The thread count is set through the environment before torch is imported, as
torch_bench.py does (Debian's torch runs its products in OpenBLAS, whose threads
torch.set_num_threads does not control): OMP_NUM_THREADS, OPENBLAS_NUM_THREADS,
MKL_NUM_THREADS and OMP_WAIT_POLICY=PASSIVE. The OpenBLAS kernel set is the caller's:
run.sh sets OPENBLAS_CORETYPE for this process to what bench/blas_pick.py chose; for a
training run by hand set it the same way (shared/notes/performance.md).

The recipe (issue 14, section 4): vocabulary 256 (bytes), context T = 64, d = 128, 4
heads, 2 pre-LN blocks (x + attn(ln(x)), then x + mlp(ln(x)); the MLP 4d wide with GELU
in its erf form), learned token and position embeddings, a final layernorm, an untied
output Linear(128, 256). Linear weights and both embeddings normal(0, 0.02), biases 0,
layernorm scale 1 and shift 0 (eps 1e-5). Causal attention through PyTorch's fused
scaled_dot_product_attention (is_causal=True; scale 1/sqrt(32)); the query, key and value
projections are one Linear(128, 384) and the output projection a Linear(128, 128), both
with biases. Loss: the mean cross-entropy over all B*T positions. AdamW lr 1e-3, betas
(0.9, 0.999), eps 1e-8, weight decay 0.01 on every parameter (torch.optim.AdamW given
model.parameters(): biases, layernorms and embeddings decay too), no schedule, no
gradient clipping, no dropout; batch 32 windows; 2000 steps.

The data, exactly as bpcc's `text:FILE:seq=64,split=0.9` defines it: the file's bytes
(values 0-255), split = floor(0.9 * size). A training window is T + 1 bytes at an offset
drawn uniformly from [0, split - T - 1] (each of the batch's windows independently, from
a torch.Generator seeded with --seed): x = window[0:T], y = window[1:T+1]. The validation
windows are the fixed ones at offsets split + i*T, i = 0, 1, ..., as long as the window's
T + 1 bytes fit in the file; the validation loss is the mean cross-entropy over every
position of every validation window (nats/char; bits/char = nats / ln 2).
"""
import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The recipe (issue 14, section 4)
VOCAB, T, D, HEADS, LAYERS, BATCH = 256, 64, 128, 4, 2, 32
LR, BETAS, WEIGHT_DECAY, EPS = 1e-3, (0.9, 0.999), 0.01, 1e-8
STEPS, EVAL_EVERY, SPLIT = 2000, 200, 0.9
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "fortunes", "fortunes.txt")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="torch_gpt.py", description="issue 14's tinygpt recipe in PyTorch")
    sub = ap.add_subparsers(dest="mode", required=True)
    tr = sub.add_parser("train", help="the whole recipe, validation loss every --eval-every steps")
    tr.add_argument("--data", default=DEFAULT_DATA, help="the text file (default: %(default)s)")
    tr.add_argument("--steps", type=int, default=STEPS)
    tr.add_argument("--eval-every", type=int, default=EVAL_EVERY)
    tr.add_argument("--threads", type=int, default=2)
    tr.add_argument("--seed", type=int, default=0)
    be = sub.add_parser("bench", help="M5 of make bench: the median step time")
    be.add_argument("threads", type=int)
    be.add_argument("steps", type=int)
    a = ap.parse_args(argv)
    if a.threads < 1 or (a.mode == "train" and (a.steps < 1 or a.eval_every < 1)) or (a.mode == "bench" and a.steps < 1):
        ap.error("threads, steps and --eval-every must be at least 1")
    return a


args = parse_args(sys.argv[1:])
for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[k] = str(args.threads)
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

try:
    import torch  # noqa: E402
    import torch.nn as nn  # noqa: E402
    import torch.nn.functional as F  # noqa: E402
except ImportError:
    print("torch unavailable: python3-torch does not import here")
    sys.exit(0)

sys.path.insert(0, HERE)
from blas_pick import openblas_core  # noqa: E402  (bench/, this script's directory)

torch.set_num_threads(args.threads)


def causal_attention(q, k, v):
    """softmax(q k^T / sqrt(dh) + causal mask) v over [B, H, T, dh], PyTorch's fused
    op: F.scaled_dot_product_attention from torch 2.0 on; torch 1.13 (Debian 12's) has
    it as F._scaled_dot_product_attention(q, k, v, mask, dropout, need_weights, causal),
    which returns (output, weights)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F._scaled_dot_product_attention(q, k, v, None, 0.0, False, True)[0]


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        # [B, T, D] -> [B, H, T, dh]
        q, k, v = (z.reshape(b, t, HEADS, D // HEADS).transpose(1, 2) for z in (q, k, v))
        o = causal_attention(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(b, t, D))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D)
        self.attn = Attention()
        self.ln2 = nn.LayerNorm(D)
        self.mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))   # GELU: erf form

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D)
        self.pos = nn.Embedding(T, D)
        self.blocks = nn.Sequential(*[Block() for _ in range(LAYERS)])
        self.ln_f = nn.LayerNorm(D)
        self.head = nn.Linear(D, VOCAB)          # untied from self.tok
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
            # nn.LayerNorm starts at weight 1, bias 0

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t))
        return self.head(self.ln_f(self.blocks(x)))


def loss_of(model, x, y):
    """The mean cross-entropy over every position (nats)."""
    z = model(x)
    return F.cross_entropy(z.reshape(-1, VOCAB), y.reshape(-1))


def make_optimizer(model):
    return torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)


class TextData:
    """bpcc's text: loader (the module docstring): the training windows drawn from the
    first split bytes, the fixed validation windows of the rest."""

    def __init__(self, path, seed):
        with open(path, "rb") as f:
            raw = f.read()
        self.size = len(raw)
        self.split = int(math.floor(SPLIT * self.size))
        if self.split < T + 1 or self.size - self.split < T + 1:
            sys.exit("torch_gpt.py: %s: %d bytes is too short for windows of %d bytes on both sides of the split"
                     % (path, self.size, T + 1))
        self.bytes = torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()
        self.gen = torch.Generator().manual_seed(seed)
        nval = (self.size - self.split - (T + 1)) // T + 1     # split + i*T + T + 1 <= size
        starts = self.split + T * torch.arange(nval)
        w = self.bytes[starts[:, None] + torch.arange(T + 1)]
        self.val_x, self.val_y = w[:, :T], w[:, 1:]

    def batch(self):
        starts = torch.randint(0, self.split - T, (BATCH,), generator=self.gen)   # [0, split - T - 1]
        w = self.bytes[starts[:, None] + torch.arange(T + 1)]
        return w[:, :T], w[:, 1:]

    @torch.no_grad()
    def val_loss(self, model):
        """The mean cross-entropy over every validation position (the sum over batches
        of windows, divided by the count: the mean of equal-sized batch means would be
        the same only when the windows divide evenly)."""
        total, n = 0.0, 0
        for i in range(0, self.val_x.shape[0], BATCH):
            x, y = self.val_x[i:i + BATCH], self.val_y[i:i + BATCH]
            z = model(x)
            total += F.cross_entropy(z.reshape(-1, VOCAB), y.reshape(-1), reduction="sum").item()
            n += y.numel()
        return total / n


def train(a):
    torch.manual_seed(a.seed)
    data = TextData(a.data, a.seed)
    model = TinyGPT()
    opt = make_optimizer(model)
    nparams = sum(p.numel() for p in model.parameters())
    print("torch %s, %d threads, OpenBLAS core %s; %d parameters" % (torch.__version__, a.threads,
                                                                    openblas_core() or "-", nparams))
    print("data %s: %d bytes, split %d; %d validation windows (%d positions)"
          % (os.path.relpath(a.data), data.size, data.split, data.val_x.shape[0], data.val_y.numel()))
    print("%6s %10s %12s %12s %10s" % ("step", "train", "val nats", "val bits", "seconds"))

    def report(step, train_loss, t0):
        v = data.val_loss(model)
        tl = "-" if train_loss is None else "%.4f" % train_loss
        print("%6d %10s %12.4f %12.4f %10.1f" % (step, tl, v, v / math.log(2), time.perf_counter() - t0))
        sys.stdout.flush()
        return v

    t0 = time.perf_counter()
    train_time = 0.0
    report(0, None, t0)
    running = []
    for step in range(1, a.steps + 1):
        s0 = time.perf_counter()
        x, y = data.batch()
        opt.zero_grad(set_to_none=True)
        loss = loss_of(model, x, y)
        loss.backward()
        opt.step()
        train_time += time.perf_counter() - s0
        running.append(loss.item())
        if step % a.eval_every == 0 or step == a.steps:
            last = report(step, statistics.mean(running), t0)
            running = []
    wall = time.perf_counter() - t0
    print("final: step %d validation %.4f nats/char, %.4f bits/char; wall %.1f s (training steps %.1f s, "
          "%.1f ms a step; the rest is validation)" % (a.steps, last, last / math.log(2), wall, train_time,
                                                     1e3 * train_time / a.steps))


def bench(a):
    print("blas_core", openblas_core() or "-")
    torch.manual_seed(0)
    model = TinyGPT()
    opt = make_optimizer(model)
    # one batch of random token ids, reused every step (bpcc bench does the same)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, VOCAB, (BATCH, T), generator=g)
    y = torch.randint(0, VOCAB, (BATCH, T), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_of(model, x, y).backward()
        opt.step()

    for _ in range(5):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"torch m5 {statistics.median(times):.3f} {min(times):.3f} {max(times):.3f} {rss:.1f}")
    sys.stdout.flush()


if args.mode == "train":
    train(args)
else:
    bench(args)
