"""Same-machine PyTorch counterpart of the reference's speed figures (REFERENCE.md §6).

REFERENCE.md §6 lists how fast the PyTorch reference implementation
(github.com/hangyuzhu/leakage-attack-in-federated-learning) runs on a 2-core CPU. This script
re-measures the same operations with plain PyTorch on *this* machine, so leakjax's timings can
be compared with torch timings taken under the same conditions (same CPU, same load). It is an
independent re-implementation of the measured operations, not the reference's code, and is a
standalone script: the leakjax package and its tests never import it (torch is not a
dependency).

Settings: CPU, ``torch.set_num_threads(2)``, synthetic CIFAR-shaped data (N, 3, 32, 32) float32,
one warm-up call, then the minimum over ``--repeats`` timed calls (seconds per call).

Measurements (models as in REFERENCE.md §3; cnn = CifarConvNetNoDropout, cnn3 = DLFConvNet3):

- dlg: cnn, 1 image. One DLG objective evaluation, sum_l ||g_dummy - g_true||^2 with soft-label
  cross-entropy on softmax(dummy label logits), dummy gradient with create_graph, plus its
  backward to the dummy image and label logits (one LBFGS closure call in the reference).
- ig: cnn, 1 image, fixed int label, model.eval(). 1 - cosine(g_dummy, g_true) over all
  parameter gradients flattened + 1e-6 * TV (L1, mean), backward to the image, then the
  reference's per-iteration Adam step on sign(grad) and the box projection.
- ig_fedavg: cnn, 10 dummies, 5 unrolled full-batch functional SGD steps (lr 0.01,
  create_graph), update = theta_0 - theta_5, 1 - cosine vs a fixed target update + TV,
  backward to the 10 images, Adam step on sign(grad).
- dlf_cnn3 / dlf_cnn: 50 dummies, 5 unrolled SGD steps of batch 10 (one epoch in order),
  update = theta_0 - theta_5, sum_l ||update_l - target_l||^2, backward to the images, Adam step.
- grnn: cnn, batch 4. Gradient of CE at the observed weights (create_graph) for 4 images and
  soft labels, ||d||^2 + ||d||_2 against the target gradient, backward, RMSprop step. The images
  (and label logits) are optimised directly instead of through the GRNN generator.
- train_step: cnn, one SGD step (forward, backward, step; lr 0.1, momentum 0.5, weight decay
  1e-5) at batch 50. §6 has no direct figure; 33.7 s / 200 steps of the FedAvg round bounds it.
- fedavg_round: cnn, 10 clients x 500 images, batch 50 (shuffled DataLoader), 2 local epochs
  (SGD lr 0.1, momentum 0.5, weight decay 1e-5), clients one after another, each starting by
  loading the global state dict, then the n_train-weighted average of the state dicts. Timed
  once after a one-step warm-up (about half a minute), whatever ``--repeats`` says.

Optional (only with ``--only``): resnet18_step (one SGD step of the CIFAR ResNet18, batch 50)
and cpa (one CPA iteration on the fc2 first-layer gradient, batch 10; timed over 100 iterations
per repeat), the two remaining rows of §6.

Run (from the repository root, with a Python that has torch):

    python benchmarks/torch_reference.py [--only=dlg,ig,...] [--repeats=5] [--out=FILE.json]

Prints one line per measurement (with the §6 figure) and, with --out, writes a JSON list of
{"name", "seconds", "setting", "torch", "threads"}.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

THREADS = 2

# REFERENCE.md §6, seconds.
REFERENCE = {
    "dlg": 0.180,
    "ig": 0.209,
    "ig_fedavg": 1.32,
    "dlf_cnn": 1.68,
    "dlf_cnn3": 0.392,
    "grnn": 0.418,
    "train_step": 33.7 / 200,  # derived: FedAvg round / 200 local steps (upper bound)
    "fedavg_round": 33.7,
    "resnet18_step": 2.18,
    "cpa": 0.0022,
}
DEFAULT = ["dlg", "ig", "ig_fedavg", "dlf_cnn3", "dlf_cnn", "grnn", "train_step", "fedavg_round"]
EXTRA = ["resnet18_step", "cpa"]


# ---------------------------------------------------------------- models (REFERENCE.md §3)


class CNN(nn.Module):
    """CifarConvNetNoDropout: 8.41M parameters, 8 tensors."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 16 * 16, 512)
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class CNN3(nn.Module):
    """DLFConvNet3: 1.73M parameters."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1)
        self.conv2 = nn.Conv2d(64, 128, 3, padding=1)
        self.fc1 = nn.Linear(128 * 8 * 8, 200)
        self.fc2 = nn.Linear(200, num_classes)

    def forward(self, x):
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class FC2(nn.Module):
    """CPA's fc2: 3072 -> 256 -> C."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.fc1 = nn.Linear(3 * 32 * 32, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet18: 3x3 stem, no max-pool, BasicBlock [2, 2, 2, 2], avgpool 4."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.avg_pool2d(x, 4).flatten(1))


# ---------------------------------------------------------------- helpers


def _images(n, gen):
    return torch.rand(n, 3, 32, 32, generator=gen) * 2 - 1


def _labels(n, gen, num_classes=10):
    return torch.randint(0, num_classes, (n,), generator=gen)


def _true_grads(model, x, y):
    loss = F.cross_entropy(model(x), y)
    return [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]


def _tv_l1(x):
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
        x[..., :, 1:] - x[..., :, :-1]
    ).abs().mean()


def _cosine_loss(a, b):
    dot = sum((u * v).sum() for u, v in zip(a, b, strict=True))
    na = sum(u.pow(2).sum() for u in a).sqrt()
    nb = sum(v.pow(2).sum() for v in b).sqrt()
    return 1 - dot / (na * nb)


def _unrolled_update(model, x, y, steps, batch, lr):
    """theta_0 - theta_steps after `steps` functional SGD steps on consecutive minibatches.

    Every step keeps its graph (create_graph=True), so the result is differentiable in x.
    """
    names = [n for n, _ in model.named_parameters()]
    p0 = [p for _, p in model.named_parameters()]
    params = p0
    n = x.shape[0]
    for s in range(steps):
        i = (s * batch) % n
        out = functional_call(model, dict(zip(names, params, strict=True)), (x[i : i + batch],))
        loss = F.cross_entropy(out, y[i : i + batch])
        grads = torch.autograd.grad(loss, params, create_graph=True)
        params = [p - lr * g for p, g in zip(params, grads, strict=True)]
    return [a - b for a, b in zip(p0, params, strict=True)]


def _time(fn, repeats):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# ---------------------------------------------------------------- measurements


def bench_dlg(repeats, gen):
    model = CNN()
    params = list(model.parameters())
    target = _true_grads(model, _images(1, gen), _labels(1, gen))
    x = torch.randn(1, 3, 32, 32, generator=gen, requires_grad=True)
    label = torch.randn(1, 10, generator=gen, requires_grad=True)

    def step():
        x.grad = label.grad = None
        out = model(x)
        loss = torch.sum(-F.softmax(label, -1) * F.log_softmax(out, -1), -1).mean()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        obj = sum(((g - t) ** 2).sum() for g, t in zip(grads, target, strict=True))
        obj.backward(inputs=[x, label])
        return obj

    sec = _time(step, repeats)
    return sec, "cnn, 1 image, soft labels; objective + backward to image and labels"


def bench_ig(repeats, gen):
    model = CNN().eval()
    params = list(model.parameters())
    y = _labels(1, gen)
    target = _true_grads(model, _images(1, gen), y)
    x = torch.randn(1, 3, 32, 32, generator=gen, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.1)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        obj = _cosine_loss(grads, target) + 1e-6 * _tv_l1(x)
        obj.backward(inputs=[x])
        x.grad.sign_()
        opt.step()
        with torch.no_grad():
            x.clamp_(-1, 1)
        return obj

    sec = _time(step, repeats)
    return sec, "cnn, 1 image, fixed label; cosine + 1e-6 TV, backward, Adam(sign) + clamp"


def bench_ig_fedavg(repeats, gen):
    model = CNN().eval()
    n, steps, lr = 10, 5, 0.01
    y = _labels(n, gen)
    target = [u.detach() for u in _unrolled_update(model, _images(n, gen), y, steps, n, lr)]
    x = torch.randn(n, 3, 32, 32, generator=gen, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.1)

    def step():
        opt.zero_grad()
        update = _unrolled_update(model, x, y, steps, n, lr)
        obj = _cosine_loss(update, target) + 1e-6 * _tv_l1(x)
        obj.backward(inputs=[x])
        x.grad.sign_()
        opt.step()
        with torch.no_grad():
            x.clamp_(-1, 1)
        return obj

    sec = _time(step, repeats)
    return sec, "cnn, 10 dummies, 5 unrolled full-batch SGD steps lr 0.01; cosine, Adam(sign)"


def _bench_dlf(model, repeats, gen):
    n, batch, steps, lr = 50, 10, 5, 0.01
    y = _labels(n, gen).sort().values  # label-count restoration yields class-sorted labels
    target = [u.detach() for u in _unrolled_update(model, _images(n, gen), y, steps, batch, lr)]
    x = torch.randn(n, 3, 32, 32, generator=gen, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.1)

    def step():
        opt.zero_grad()
        update = _unrolled_update(model, x, y, steps, batch, lr)
        obj = sum(((u - t) ** 2).sum() for u, t in zip(update, target, strict=True))
        obj.backward(inputs=[x])
        opt.step()
        return obj

    return _time(step, repeats)


def bench_dlf_cnn3(repeats, gen):
    sec = _bench_dlf(CNN3(), repeats, gen)
    return sec, "cnn3, 50 dummies, 5 unrolled SGD steps of batch 10; L2 to update, Adam"


def bench_dlf_cnn(repeats, gen):
    sec = _bench_dlf(CNN(), repeats, gen)
    return sec, "cnn, 50 dummies, 5 unrolled SGD steps of batch 10; L2 to update, Adam"


def bench_grnn(repeats, gen):
    model = CNN()
    params = list(model.parameters())
    n = 4
    target = torch.cat([g.flatten() for g in _true_grads(model, _images(n, gen), _labels(n, gen))])
    x = torch.rand(n, 3, 32, 32, generator=gen, requires_grad=True)
    label = torch.randn(n, 10, generator=gen, requires_grad=True)
    opt = torch.optim.RMSprop([x, label], lr=1e-4, momentum=0.99)

    def step():
        opt.zero_grad()
        loss = torch.sum(-F.softmax(label, -1) * F.log_softmax(model(x), -1), -1).mean()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        d = torch.cat([g.flatten() for g in grads]) - target
        sq = d.pow(2).sum()
        obj = sq + sq.sqrt()
        obj.backward(inputs=[x, label])
        opt.step()
        return obj

    sec = _time(step, repeats)
    return sec, (
        "cnn, batch 4; L2 + sqrt(L2) on gradients, RMSprop; images and label logits optimised "
        "directly (no generator)"
    )


def _sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5, weight_decay=1e-5)


def _bench_train_step(model, repeats, gen):
    opt = _sgd(model)
    x, y = _images(50, gen), _labels(50, gen)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return _time(step, repeats)


def bench_train_step(repeats, gen):
    sec = _bench_train_step(CNN(), repeats, gen)
    return sec, "cnn, batch 50; forward + backward + SGD(momentum 0.5, wd 1e-5) step"


def bench_resnet18_step(repeats, gen):
    sec = _bench_train_step(ResNet18().train(), repeats, gen)
    return sec, "resnet18 (CIFAR), batch 50; forward + backward + SGD(momentum 0.5) step"


def bench_fedavg_round(repeats, gen):
    del repeats  # one round is long enough to time once
    k, n, batch, epochs = 10, 500, 50, 2
    global_model, client = CNN(), CNN()
    data = [torch.utils.data.TensorDataset(_images(n, gen), _labels(n, gen)) for _ in range(k)]
    loader_gen = torch.Generator().manual_seed(0)
    loaders = [
        torch.utils.data.DataLoader(d, batch_size=batch, shuffle=True, generator=loader_gen)
        for d in data
    ]

    def local_train(loader):
        opt = _sgd(client)
        client.train()
        for _ in range(epochs):
            for xb, yb in loader:
                opt.zero_grad()
                F.cross_entropy(client(xb), yb).backward()
                opt.step()

    def fedavg_round():
        states, sizes = [], []
        for loader in loaders:
            client.load_state_dict(global_model.state_dict())  # synchronise
            local_train(loader)
            states.append({key: v.detach().clone() for key, v in client.state_dict().items()})
            sizes.append(len(loader.dataset))
        total = sum(sizes)
        avg = {
            key: sum(s[key] * (m / total) for s, m in zip(states, sizes, strict=True))
            for key in states[0]
        }
        global_model.load_state_dict(avg)

    # warm-up: one local step
    opt = _sgd(client)
    xb, yb = next(iter(loaders[0]))
    F.cross_entropy(client(xb), yb).backward()
    opt.step()

    t0 = time.perf_counter()
    fedavg_round()
    sec = time.perf_counter() - t0
    return sec, (
        "cnn, 10 clients x 500 images, batch 50, 2 epochs, SGD lr 0.1 m 0.5 wd 1e-5, sequential "
        "clients incl. state sync and weighted average; timed once"
    )


def bench_cpa(repeats, gen, inner=100):
    model = FC2()
    b = 10
    w_grad = _true_grads(model, _images(b, gen), _labels(b, gen))[0]  # (256, 3072)
    # Preprocessing (once): centre, whiten with the eigenvectors of the 256 x 256 covariance,
    # keep the top-B components.
    g = w_grad - w_grad.mean(0, keepdim=True)
    evals, evecs = torch.linalg.eigh(g @ g.T / g.shape[1])
    top = evals.argsort(descending=True)[:b]
    z = (evecs[:, top] / evals[top].clamp_min(1e-12).sqrt()).T @ g  # (B, 3072) whitened
    u = torch.eye(b, requires_grad=True)
    opt = torch.optim.Adam([u], lr=1e-3)
    decor, temp, tv = 1.47, 12.4, 3.1
    eye = torch.eye(b)

    def one():
        opt.zero_grad()
        un = u / u.norm(dim=1, keepdim=True)
        xs = un @ z
        ne = -torch.log(torch.cosh(xs)).mean(1).pow(2).mean()
        dec = (torch.exp(temp * (un @ un.T - eye).abs()) - 1).mean()
        obj = ne + decor * dec + tv * _tv_l1(xs.view(b, 3, 32, 32))
        obj.backward()
        opt.step()
        return obj

    def many():
        for _ in range(inner):
            obj = one()
        return obj

    sec = _time(many, repeats) / inner
    return sec, f"fc2, batch 10; one CPA iteration (Adam), per iteration over {inner}"


BENCHES = {
    "dlg": bench_dlg,
    "ig": bench_ig,
    "ig_fedavg": bench_ig_fedavg,
    "dlf_cnn3": bench_dlf_cnn3,
    "dlf_cnn": bench_dlf_cnn,
    "grnn": bench_grnn,
    "train_step": bench_train_step,
    "fedavg_round": bench_fedavg_round,
    "resnet18_step": bench_resnet18_step,
    "cpa": bench_cpa,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only",
        default=",".join(DEFAULT),
        help=f"comma-separated subset of {','.join(BENCHES)} (default: {','.join(DEFAULT)})",
    )
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()

    names = [s for s in args.only.split(",") if s]
    unknown = [s for s in names if s not in BENCHES]
    if unknown:
        ap.error(f"unknown measurement(s): {','.join(unknown)}; choose from {','.join(BENCHES)}")

    torch.set_num_threads(THREADS)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    results = []
    for name in names:
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)  # parameter initialisation
        sec, setting = BENCHES[name](args.repeats, gen)
        ref = REFERENCE[name]
        print(f"{name:14s} {sec:9.4f} s   (REFERENCE.md §6: {ref:.4g} s)   {setting}", flush=True)
        results.append(
            {
                "name": name,
                "seconds": sec,
                "setting": setting,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
