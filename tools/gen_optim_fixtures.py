#!/usr/bin/python3
"""Generate test/fixtures/optim_fixtures.h: torch.optim trajectories for vikt.

Run by a developer with PyTorch 1.13 (Debian python3-torch), never by make:

    /usr/bin/python3 tools/gen_optim_fixtures.py            # writes the header
    /usr/bin/python3 tools/gen_optim_fixtures.py --stdout   # prints it instead

Every configuration runs 20 steps on one fixed objective over two parameters,
x (6 elements) and W (2x3), built only from ops vikt also has (slice, sub,
square, scale, mul, sum, add):

    a = x[0:5], b = x[1:6]
    L = sum(10 * (b - a^2)^2 + (1 - a)^2)      a Rosenbrock-like valley
      + sum(C * (W - T)^2)                      a weighted matrix quadratic

One step is: zero the gradients, forward, backward, clip (by value, then by
norm, when set), optimizer.step(), then scheduler.step(). Torch's schedulers
count epochs; calling scheduler.step() after every optimizer.step() makes the
position the number of steps taken, as vikt's schedules define it. Step and
exponential schedules use torch's StepLR and ExponentialLR. Cosine annealing
with linear warm-up has no torch 1.13 class, so it is a LambdaLR whose factor
is vikt's documented formula divided by the base rate:

    t < W:  lr * t / W
    t >= W: eta_min + (lr - eta_min) * (1 + cos(pi * min(t - W, T) / T)) / 2

The header records, per configuration, the vikt rule, the vikt_optimizer_set
settings that reproduce it, and the parameters after each step.
"""
import math
import sys

import torch

STEPS = 20
X0 = [-1.2, 1.0, -0.5, 0.8, 1.5, 0.3]
W0 = [0.5, -1.0, 2.0, 0.0, 1.5, -0.7]
TARGET = [1.0, 0.5, -1.5, 0.25, -0.5, 1.25]
WEIGHT = [1.0, 2.0, 0.5, 3.0, 1.5, 0.25]
ROSEN_SCALE = 10.0

# Each configuration: (name, vikt rule, settings). Settings are vikt parameter
# names (without VIKT_OPT_) and values; the torch side is derived from them.
CONFIGS = [
    ("sgd_plain", "SGD", [("LR", 0.01)]),
    ("sgd_momentum_dampening", "SGD", [("LR", 0.005), ("MOMENTUM", 0.9), ("DAMPENING", 0.1)]),
    ("sgd_nesterov_wd", "SGD", [("LR", 0.005), ("MOMENTUM", 0.9), ("NESTEROV", 1),
                                ("WEIGHT_DECAY", 0.01)]),
    ("adagrad_plain", "ADAGRAD", [("LR", 0.1)]),
    ("adagrad_lr_decay_init_acc", "ADAGRAD", [("LR", 0.1), ("LR_DECAY", 0.05),
                                              ("INITIAL_ACCUMULATOR", 0.1), ("EPS", 1e-8)]),
    ("adagrad_wd", "ADAGRAD", [("LR", 0.1), ("WEIGHT_DECAY", 0.1)]),
    ("rmsprop_plain", "RMSPROP", [("LR", 0.01)]),
    ("rmsprop_momentum", "RMSPROP", [("LR", 0.005), ("MOMENTUM", 0.8), ("ALPHA", 0.9)]),
    ("rmsprop_centered", "RMSPROP", [("LR", 0.01), ("CENTERED", 1), ("EPS", 1e-6)]),
    ("rmsprop_centered_momentum_wd", "RMSPROP", [("LR", 0.005), ("CENTERED", 1),
                                                 ("MOMENTUM", 0.5), ("WEIGHT_DECAY", 0.05)]),
    ("adam_plain", "ADAM", [("LR", 0.05)]),
    ("adam_amsgrad", "ADAM", [("LR", 0.05), ("AMSGRAD", 1), ("BETA1", 0.8), ("BETA2", 0.99)]),
    ("adam_wd", "ADAM", [("LR", 0.05), ("WEIGHT_DECAY", 0.1)]),
    ("adamw_default", "ADAMW", [("LR", 0.05)]),
    ("adamw_wd", "ADAMW", [("LR", 0.05), ("WEIGHT_DECAY", 0.1)]),
    ("adamw_amsgrad", "ADAMW", [("LR", 0.05), ("AMSGRAD", 1), ("BETA2", 0.9), ("EPS", 1e-6)]),
    ("adam_clip_norm", "ADAM", [("LR", 0.05), ("CLIP_NORM", 1.0)]),
    ("sgd_clip_value", "SGD", [("LR", 0.01), ("MOMENTUM", 0.5), ("CLIP_VALUE", 2.0)]),
    ("sgd_step_schedule", "SGD", [("LR", 0.01), ("SCHEDULE", 1), ("STEP_SIZE", 5),
                                  ("GAMMA", 0.5)]),
    ("adam_exponential_schedule", "ADAM", [("LR", 0.05), ("SCHEDULE", 2), ("GAMMA", 0.9)]),
    ("adam_cosine_warmup", "ADAM", [("LR", 0.05), ("SCHEDULE", 3), ("WARMUP_STEPS", 4),
                                    ("T_MAX", 10), ("ETA_MIN", 0.001)]),
    ("sgd_cosine_warmup", "SGD", [("LR", 0.01), ("MOMENTUM", 0.5), ("SCHEDULE", 3),
                                  ("WARMUP_STEPS", 3), ("T_MAX", 12), ("ETA_MIN", 0.0005)]),
]

TORCH_NAMES = {"LR": "lr", "WEIGHT_DECAY": "weight_decay", "MOMENTUM": "momentum",
               "DAMPENING": "dampening", "EPS": "eps", "ALPHA": "alpha",
               "LR_DECAY": "lr_decay", "INITIAL_ACCUMULATOR": "initial_accumulator_value"}
FLAGS = {"NESTEROV": "nesterov", "AMSGRAD": "amsgrad", "CENTERED": "centered"}
LOOP_ONLY = {"CLIP_NORM", "CLIP_VALUE", "SCHEDULE", "STEP_SIZE", "GAMMA", "WARMUP_STEPS",
             "T_MAX", "ETA_MIN"}
RULES = {"SGD": torch.optim.SGD, "ADAGRAD": torch.optim.Adagrad,
         "RMSPROP": torch.optim.RMSprop, "ADAM": torch.optim.Adam,
         "ADAMW": torch.optim.AdamW}


def objective(x, w, target, weight):
    a, b = x[0:5], x[1:6]
    rosen = torch.sum(torch.square(b - torch.square(a)) * ROSEN_SCALE + torch.square(1 - a))
    quad = torch.sum(weight * torch.square(w - target))
    return rosen + quad


def make_optimizer(rule, settings, params):
    kwargs = {}
    betas = [0.9, 0.999]
    for key, value in settings.items():
        if key in TORCH_NAMES:
            kwargs[TORCH_NAMES[key]] = value
        elif key in FLAGS:
            kwargs[FLAGS[key]] = bool(value)
        elif key == "BETA1":
            betas[0] = value
        elif key == "BETA2":
            betas[1] = value
        elif key not in LOOP_ONLY:
            raise ValueError("unmapped setting " + key)
    if rule in ("ADAM", "ADAMW"):
        kwargs["betas"] = tuple(betas)
    kwargs["foreach"] = False  # the single-tensor path (1.13's default on CPU)
    return RULES[rule](params, **kwargs)


def cosine_factor(settings):
    lr = settings["LR"]
    warmup = int(settings.get("WARMUP_STEPS", 0))
    t_max = int(settings.get("T_MAX", 1))
    eta_min = settings.get("ETA_MIN", 0.0)

    def factor(t):
        if t < warmup:
            return t / warmup
        tp = min(t - warmup, t_max)
        return (eta_min + (lr - eta_min) * (1 + math.cos(math.pi * tp / t_max)) / 2) / lr
    return factor


def make_scheduler(settings, opt):
    kind = int(settings.get("SCHEDULE", 0))
    if kind == 0:
        return None
    if kind == 1:
        return torch.optim.lr_scheduler.StepLR(opt, step_size=int(settings["STEP_SIZE"]),
                                               gamma=settings["GAMMA"])
    if kind == 2:
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=settings["GAMMA"])
    return torch.optim.lr_scheduler.LambdaLR(opt, cosine_factor(settings))


def run(rule, settings):
    x = torch.tensor(X0, dtype=torch.float32, requires_grad=True)
    w = torch.tensor(W0, dtype=torch.float32).reshape(2, 3).requires_grad_()
    target = torch.tensor(TARGET, dtype=torch.float32).reshape(2, 3)
    weight = torch.tensor(WEIGHT, dtype=torch.float32).reshape(2, 3)
    opt = make_optimizer(rule, settings, [x, w])
    sched = make_scheduler(settings, opt)
    xs, ws = [], []
    for _ in range(STEPS):
        opt.zero_grad()
        objective(x, w, target, weight).backward()
        if settings.get("CLIP_VALUE"):
            torch.nn.utils.clip_grad_value_([x, w], settings["CLIP_VALUE"])
        if settings.get("CLIP_NORM"):
            torch.nn.utils.clip_grad_norm_([x, w], settings["CLIP_NORM"])
        opt.step()
        if sched is not None:
            sched.step()
        xs.append(x.detach().clone().tolist())
        ws.append(w.detach().clone().reshape(-1).tolist())
    for row in xs + ws:
        if not all(math.isfinite(v) for v in row):
            raise RuntimeError("non-finite trajectory")
    return xs, ws


def f32(v):
    s = "%.9g" % v
    if "e" not in s and "." not in s and "n" not in s:
        s += ".0"
    return s + "f"


def floats(values):
    return "{" + ", ".join(f32(v) for v in values) + "}"


def emit(out):
    max_settings = max(len(s) for _, _, s in CONFIGS)
    w = out.write
    w("/* Generated by tools/gen_optim_fixtures.py with PyTorch %s; do not edit.\n"
      " * Regenerate: /usr/bin/python3 tools/gen_optim_fixtures.py\n"
      " *\n"
      " * torch.optim trajectories on L = sum(10*(b - a^2)^2 + (1 - a)^2) + sum(C*(W - T)^2)\n"
      " * with a = x[0:5], b = x[1:6]: the parameters after each of %d steps. Include\n"
      " * after vikt.h (settings name vikt_optim_param constants). */\n"
      % (torch.__version__, STEPS))
    w("#ifndef VIKT_OPTIM_FIXTURES_H\n#define VIKT_OPTIM_FIXTURES_H\n\n")
    w("enum { OF_STEPS = %d, OF_NX = 6, OF_NW = 6, OF_MAX_SETTINGS = %d };\n\n"
      % (STEPS, max_settings))
    w("static const float of_rosen_scale = %s;\n" % f32(ROSEN_SCALE))
    w("static const float of_x0[OF_NX] = %s;\n" % floats(X0))
    w("static const float of_w0[OF_NW] = %s; /* 2x3 */\n" % floats(W0))
    w("static const float of_target[OF_NW] = %s;\n" % floats(TARGET))
    w("static const float of_weight[OF_NW] = %s;\n\n" % floats(WEIGHT))
    w("typedef struct of_setting {\n    vikt_optim_param param;\n    double value;\n"
      "} of_setting;\n\n")
    w("typedef struct of_fixture {\n    const char *name;\n    vikt_optim_kind kind;\n"
      "    int nsettings;\n    of_setting settings[OF_MAX_SETTINGS];\n"
      "    float x[OF_STEPS][OF_NX]; /* after step 1, 2, ... */\n"
      "    float w[OF_STEPS][OF_NW];\n} of_fixture;\n\n")
    w("static const of_fixture of_fixtures[] = {\n")
    for name, rule, settings in CONFIGS:
        xs, ws = run(rule, dict(settings))
        sets = ", ".join("{VIKT_OPT_%s, %r}" % (k, float(v)) for k, v in settings)
        w("    {\"%s\", VIKT_OPTIM_%s, %d, {%s},\n" % (name, rule, len(settings), sets))
        w("     {" + ",\n      ".join(floats(r) for r in xs) + "},\n")
        w("     {" + ",\n      ".join(floats(r) for r in ws) + "}},\n")
    w("};\n\nenum { OF_COUNT = (int)(sizeof of_fixtures / sizeof of_fixtures[0]) };\n\n")
    w("#endif\n")


def main():
    if "--stdout" in sys.argv[1:]:
        emit(sys.stdout)
        return
    path = "test/fixtures/optim_fixtures.h"
    with open(path, "w") as f:
        emit(f)
    print("wrote " + path)


if __name__ == "__main__":
    main()
