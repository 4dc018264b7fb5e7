"""``explain``: one word in several sentences, static vs contextual vectors, on real data.

A static embedding (GloVe) gives "bank" one vector whatever the sentence. Self-attention
re-weights every word by its relevance to the others, Y = softmax(X Xᵀ) X, so "bank" moves toward
its context; a pretrained encoder (all-MiniLM-L6-v2: learned projections, 12 heads, 6 layers)
moves it much more. This package measures that; ``selfattention explain`` prints it.

    from selfattention.apps.explain import ExplainConfig, explain, write_outputs
    config = ExplainConfig(sentences=("The bank of the river.", "Money in the bank."))
    result = explain(config)                 # data only: similarity, top words, weights
    write_outputs(result, "results/explain") # report.html, grid_*.png, shift.png, attention.json

Modules: ``config`` (ExplainConfig), ``compare`` (static side and the similarity table),
``contextual`` (word pieces back to words), ``compute`` (explain -> ExplainResult), ``figures``
and ``outputs`` (files).
"""

from selfattention.apps.explain.compare import SCALES, Sentence
from selfattention.apps.explain.compute import (
    ExplainResult,
    Ladder,
    ModelInfo,
    StaticInfo,
    explain,
)
from selfattention.apps.explain.config import DEFAULT_SENTENCES, ExplainConfig
from selfattention.apps.explain.contextual import EncodedWords, encode_words
from selfattention.apps.explain.outputs import prepare_out, write_outputs

__all__ = [
    "DEFAULT_SENTENCES",
    "SCALES",
    "EncodedWords",
    "ExplainConfig",
    "ExplainResult",
    "Ladder",
    "ModelInfo",
    "Sentence",
    "StaticInfo",
    "encode_words",
    "explain",
    "prepare_out",
    "write_outputs",
]
