"""Views of attention weights, without Jupyter: PNG figures and a self-contained HTML report.

Every function takes the weight tensors the models return (torch tensors or NumPy arrays) and
labels; shape letters: L layers, H heads, i queries, j keys, n tokens.

    from selfattention import viz
    viz.save(viz.heatmap(w[0, 0], tokens), "head.png")             # w (b, h, i, j)
    viz.save(viz.grid(out.weights, tokens, layers="0,5", heads="0-3"), "grid.png")
    viz.save(viz.shift(static, {"self-attention": ctx}, tokens, highlight="bank"), "shift.png")
    viz.save(viz.image_attention(img, weights, grid=(7, 7), query=24), "patch.png")
    viz.report("report.html", [{"name": "s1", "tokens": tokens, "weights": out.weights}])

Views that explain a weight: ``neuron_products`` / ``neuron_figure`` (q_i·k_j dimension by
dimension), ``value_norms`` / ``value_weighted`` / ``value_weighted_figure`` (‖α_ij v_j W_o^h‖,
Kobayashi et al., 2020), ``rollout`` and ``attention_flow`` (max-flow through the layers, up to
``MAX_FLOW_TOKENS`` tokens) with ``flow_figure``.
"""

from selfattention.viz.figures import png_bytes, save
from selfattention.viz.flow import MAX_FLOW_TOKENS, attention_flow, max_flow
from selfattention.viz.heatmap import grid, heatmap
from selfattention.viz.images import image_attention, image_grid, patches, rollout
from selfattention.viz.records import AttentionRecord, dump_json, load_json
from selfattention.viz.report import render_html, report
from selfattention.viz.shift import pca, shift
from selfattention.viz.views import (
    flow_figure,
    neuron_figure,
    neuron_products,
    value_norms,
    value_weighted,
    value_weighted_figure,
)

__all__ = [
    "MAX_FLOW_TOKENS",
    "AttentionRecord",
    "attention_flow",
    "dump_json",
    "flow_figure",
    "grid",
    "heatmap",
    "image_attention",
    "image_grid",
    "load_json",
    "max_flow",
    "neuron_figure",
    "neuron_products",
    "patches",
    "pca",
    "png_bytes",
    "render_html",
    "report",
    "rollout",
    "save",
    "shift",
    "value_norms",
    "value_weighted",
    "value_weighted_figure",
]
