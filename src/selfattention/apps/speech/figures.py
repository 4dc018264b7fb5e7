"""Parameter-free attention over speech frames, full and truncated, and the picture of both."""

from __future__ import annotations

import torch
from torch import Tensor

from selfattention.apps.speech.clips import Clip
from selfattention.apps.speech.features import log_mel, read_wav, standardise
from selfattention.functional import attention

__all__ = ["band_figure", "band_weights"]


def band_weights(
    frames: Tensor, window: tuple[int, int] | None, heads: int = 1
) -> tuple[Tensor, Tensor]:
    """Parameter-free self-attention over standardised frames (Q = K = V = X), math backend.

        W = softmax(X Xᵀ / √m  on  j ∈ [i - left, i + right]),   Y = W X

    Returns Y (n, m) and W (n, n): which frames each frame draws on. window None = full.
    """
    x = standardise(frames)[None, None].expand(1, heads, -1, -1)  # (1, h, n, m)
    out, w = attention(x, x, x, window=window, return_weights=True, backend="math")
    return out[0, 0], w[0, 0]


def band_figure(clip: Clip, window: tuple[int, int] = (32, 32), frames: int | None = None):
    """Log-mel frames of ``clip`` above the full and the truncated attention weights over them
    (parameter-free, ``band_weights``); ``frames`` keeps only the first so many."""
    from selfattention.viz.figures import new_figure

    mel = log_mel(read_wav(clip.path)[0])[:frames]  # (n, 80)
    _, full = band_weights(mel, None)
    _, band = band_weights(mel, window)
    n = len(mel)
    fig = new_figure(12.0, 5.4)
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 3.2), hspace=0.35, wspace=0.18)
    top = fig.add_subplot(grid[0, :])
    top.imshow(mel.T.numpy(), origin="lower", aspect="auto", cmap="magma",
               extent=(0, n / 100, 0, mel.shape[1]))  # fmt: skip
    top.set_xlabel("seconds")
    top.set_ylabel("mel band")
    top.set_title(f'{clip.voice}/{clip.name}: "{clip.transcript}"', fontsize=9)
    for k, (w, label) in enumerate(
        ((full, "full attention: every frame sees all n"),
         (band, f"truncated: frame i sees i-{window[0]} … i+{window[1]}"))
    ):  # fmt: skip
        ax = fig.add_subplot(grid[1, k])
        vmax = float(torch.quantile(w[w > 0].flatten()[:1_000_000], 0.99))
        im = ax.imshow(w.numpy(), cmap="viridis", vmin=0, vmax=vmax, extent=(0, n, n, 0))
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("key frame j (10 ms)")
        ax.set_ylabel("query frame i")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    return fig
