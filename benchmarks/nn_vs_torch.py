"""Accuracy and speed of selfattention.nn against torch's modules (1 thread)."""

import statistics
import time
import warnings

import torch

from selfattention.nn import MultiheadAttention, TransformerEncoderLayer

warnings.simplefilter("ignore")

torch.set_num_threads(1)


def copy_layer(ol, tl):
    sd = tl.state_dict()
    w = sd["self_attn.in_proj_weight"].chunk(3)
    b = sd["self_attn.in_proj_bias"].chunk(3)
    m = {}
    for i, n in enumerate(("query", "key", "value")):
        m[f"attn.{n}_proj.weight"], m[f"attn.{n}_proj.bias"] = w[i], b[i]
    m |= {
        "attn.out_proj.weight": sd["self_attn.out_proj.weight"],
        "attn.out_proj.bias": sd["self_attn.out_proj.bias"],
        "ff.fc1.weight": sd["linear1.weight"],
        "ff.fc1.bias": sd["linear1.bias"],
        "ff.fc2.weight": sd["linear2.weight"],
        "ff.fc2.bias": sd["linear2.bias"],
    }
    m |= {f"norm{i}.{p}": sd[f"norm{i}.{p}"] for i in (1, 2) for p in ("weight", "bias")}
    ol.load_state_dict(m)


b, n, E, H = 8, 128, 256, 8
torch.manual_seed(0)
tm = torch.nn.MultiheadAttention(E, H, batch_first=True)
om = MultiheadAttention(E, H, batch_first=True)
om.load_state_dict(tm.state_dict())
tl = torch.nn.TransformerEncoderLayer(E, H, 4 * E, dropout=0.0, batch_first=True, activation="gelu")
ol = TransformerEncoderLayer(E, H, 4 * E, norm_first=False)
copy_layer(ol, tl)
x = torch.randn(b, n, E)
kpm = torch.arange(n) >= torch.tensor([128, 100, 90, 64, 128, 30, 10, 120])[:, None]


# accuracy vs the same module run in float64
def err(f32, f64):
    return float((f32.double() - f64).abs().max())


print("| computation (float32) | selfattention error | torch error |\n|---|---|---|")
cases = {
    "MHA, key_padding_mask, need_weights=False": lambda m, x: m(
        x, x, x, key_padding_mask=kpm, need_weights=False
    )[0],
    "MHA, key_padding_mask, weights (per head)": lambda m, x: m(
        x, x, x, key_padding_mask=kpm, average_attn_weights=False
    )[1],
}
for name, f in cases.items():
    ref = f(tm.double(), x.double()).detach()
    tm.float()
    print(f"| {name} | {err(f(om, x).detach(), ref):.1e} | {err(f(tm, x).detach(), ref):.1e} |")
ref = tl.double()(x.double(), src_key_padding_mask=kpm).detach()
tl.float()
ours = err(ol(x, mask=~kpm[:, None, None]).detach(), ref)
theirs = err(tl(x, src_key_padding_mask=kpm).detach(), ref)
print(f"| encoder layer (post-norm, GELU), padding | {ours:.1e} | {theirs:.1e} |")


def bench(fs, reps=10, rounds=7):
    out = {k: [] for k in fs}
    for _ in range(rounds):
        for k, f in fs.items():  # interleaved so load spikes hit both alike
            f()
            s = time.perf_counter()
            for _ in range(reps):
                f()
            out[k].append((time.perf_counter() - s) / reps * 1e3)
    return {k: statistics.median(v) for k, v in out.items()}


def fb(f):
    def g():
        f().sum().backward()

    return g


print(
    f"\n| module, b={b} n={n} dim={E} heads={H} | pass | selfattention ms | torch ms |"
    "\n|---|---|---|---|"
)
rows = {
    "MultiheadAttention, need_weights=False": (
        lambda: om(x, x, x, need_weights=False)[0],
        lambda: tm(x, x, x, need_weights=False)[0],
    ),
    "MultiheadAttention, need_weights=True": (lambda: om(x, x, x)[0], lambda: tm(x, x, x)[0]),
    "MultiheadAttention, key_padding_mask": (
        lambda: om(x, x, x, key_padding_mask=kpm, need_weights=False)[0],
        lambda: tm(x, x, x, key_padding_mask=kpm, need_weights=False)[0],
    ),
    "TransformerEncoderLayer (post-norm)": (lambda: ol(x), lambda: tl(x)),
}
for name, (o, t) in rows.items():
    for p in ("eval", "train"):
        if p == "eval":
            om.eval()
            tm.eval()
            ol.eval()
            tl.eval()
            with torch.no_grad():
                r = bench({"o": o, "t": t})
        else:
            om.train()
            tm.train()
            ol.train()
            tl.train()
            r = bench({"o": fb(o), "t": fb(t)}, reps=5)
        label = "forward (eval, no_grad)" if p == "eval" else "forward + backward"
        print(f"| {name} | {label} | {r['o']:.1f} | {r['t']:.1f} |")
