"""Training-step speed of the issue's five models, PyTorch side (bench/train.c
is vikt's; bench/train.sh runs both).

    OMP_NUM_THREADS=T OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/train_torch.py MODEL T [RUNS]

prints one line on stdout

    torch model=NAME threads=T per_s=X rss_mb=A params=P unit=U

The same models as bench/train.c (shapes, parameter counts, optimizers,
learning rates), each in PyTorch's usual form: nn.Linear, nn.Conv2d,
nn.MaxPool2d, nn.Embedding, nn.TransformerEncoderLayer(norm_first=True,
activation="gelu", dropout=0, batch_first=True) with a causal mask, nn.LSTM.
A step is zero_grad(set_to_none=True), forward, loss, backward and the
optimizer step (foreach=True: the faster form on these models here), on the
same batch every time. Warm-up for at least 0.3 s, then RUNS (default 7)
timed runs of about 0.25 s; X is the median run's rate (samples, or tokens
for the transformer, per second); rss_mb is ru_maxrss at the end.

The thread environment must be set before Python starts: with this Debian
build, OMP_NUM_THREADS=T sets ATen's threads and OPENBLAS_NUM_THREADS=1 keeps
OpenBLAS (which ATen calls for GEMM) from starting its own threads on top.
"""
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, CONTEXT, D_MODEL, HEADS, LAYERS = 65, 64, 64, 4, 2
LSTM_IN, LSTM_HIDDEN, LSTM_STEPS = 32, 128, 32


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 256), nn.Linear(256, 256), nn.Linear(256, 10)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 16, 3)
        self.fc = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, D_MODEL), nn.Embedding(CONTEXT, D_MODEL)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(D_MODEL, HEADS, 4 * D_MODEL, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(LAYERS))
        self.ln_f, self.head = nn.LayerNorm(D_MODEL), nn.Linear(D_MODEL, VOCAB)
        self.register_buffer("positions", torch.arange(CONTEXT))
        self.register_buffer("mask", torch.triu(torch.full((CONTEXT, CONTEXT), float("-inf")), 1))

    def forward(self, ids):
        h = self.tok(ids) + self.pos(self.positions)
        for block in self.blocks:
            h = block(h, src_mask=self.mask)
        return self.head(self.ln_f(h)).reshape(-1, VOCAB)


class LSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(LSTM_IN, LSTM_HIDDEN, batch_first=True)
        self.out = nn.Linear(LSTM_HIDDEN, LSTM_IN)

    def forward(self, x):
        return self.out(self.lstm(x)[0])


def make(name):
    """(model, optimizer, inputs, target, loss function, units per step, unit)"""
    g = torch.Generator().manual_seed(1)
    if name in ("mlp", "mlp1"):
        batch = 64 if name == "mlp" else 1
        model = MLP()
        x, y = torch.rand(batch, 784, generator=g), torch.randint(0, 10, (batch,), generator=g)
        return model, torch.optim.Adam(model.parameters(), 1e-3, foreach=True), x, y, F.cross_entropy, batch, "samples"
    if name == "cnn":
        model = CNN()
        x, y = torch.rand(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
        return model, torch.optim.Adam(model.parameters(), 1e-3, foreach=True), x, y, F.cross_entropy, 32, "samples"
    if name == "transformer":
        model = Transformer()
        x = torch.randint(0, VOCAB, (16, CONTEXT), generator=g)
        y = torch.randint(0, VOCAB, (16 * CONTEXT,), generator=g)
        opt = torch.optim.AdamW(model.parameters(), 3e-4, weight_decay=0.01, foreach=True)
        return model, opt, x, y, F.cross_entropy, 16 * CONTEXT, "tokens"
    if name == "lstm":
        model = LSTM()
        seq = torch.rand(16, LSTM_STEPS + 1, LSTM_IN, generator=g) * 2 - 1
        opt = torch.optim.Adam(model.parameters(), 1e-3, foreach=True)
        return model, opt, seq[:, :-1].contiguous(), seq[:, 1:].contiguous(), F.mse_loss, 16, "samples"
    raise SystemExit("train_torch: unknown model " + name)


def main():
    if len(sys.argv) < 3:
        raise SystemExit("usage: train_torch.py mlp|cnn|transformer|lstm|mlp1 THREADS [RUNS]")
    name, threads = sys.argv[1], int(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    torch.set_num_threads(threads)
    model, opt, x, y, loss_fn, units, unit = make(name)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    def run_for(seconds, min_steps):
        t0 = t1 = time.perf_counter()
        n = 0
        while n < min_steps or t1 - t0 < seconds:
            step()
            n += 1
            t1 = time.perf_counter()
        return n, t1 - t0

    run_for(0.3, 3)
    n, elapsed = run_for(0.0, 3)
    steps = int(0.25 / (elapsed / n)) + 1
    rates = sorted(steps * units / run_for(0.0, steps)[1] for _ in range(runs))
    params = sum(p.numel() for p in model.parameters())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"train: {name}: torch {params} parameters, {steps} steps per run", file=sys.stderr)
    print(f"torch model={name} threads={threads} per_s={rates[runs // 2]:.1f} rss_mb={rss:.1f} "
          f"params={params} unit={unit}")


if __name__ == "__main__":
    main()
