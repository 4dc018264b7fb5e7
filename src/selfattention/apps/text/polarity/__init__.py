"""Sentence polarity: one label per sentence (positive or negative), by self-attention.

Data: Pang & Lee's sentence polarity sample (``selfattention data fetch pang-lee-polarity``:
4,000 lower-cased movie-review sentences, 2,000 positive, 2,000 negative), split 80/10/10 by
position (:func:`selfattention.apps.text.corpus.split_indices`; each part is balanced).

Two models, one idea each:
* ``scratch``: small encoders trained here (frozen GloVe plus trained word vectors, one
  self-attention layer, attention pooling), by default an ensemble of 10 seeds;
* ``pretrained`` (``PolarityConfig(pretrained=True)``): the packaged all-MiniLM-L6-v2 encoder,
  fine-tuned with a mean-pooling linear head.
Baseline: the average of the sentence's GloVe vectors fed to logistic regression (C picked on dev).

    data = load_data()
    train(PolarityConfig(), data, "results/polarity")
    evaluate("results/polarity", data)
    predict("results/polarity", ["a gorgeous , witty film"])  # [Prediction("positive", 0.97)]
"""

from selfattention.apps.text.polarity.config import ENSEMBLE, LABELS, PolarityConfig
from selfattention.apps.text.polarity.pretrained import PretrainedClassifier, bert_batches
from selfattention.apps.text.polarity.scratch import member_seed
from selfattention.apps.text.polarity.task import (
    Prediction,
    baseline,
    evaluate,
    load_data,
    predict,
    train,
)

__all__ = [
    "ENSEMBLE",
    "LABELS",
    "PolarityConfig",
    "Prediction",
    "PretrainedClassifier",
    "baseline",
    "bert_batches",
    "evaluate",
    "load_data",
    "member_seed",
    "predict",
    "train",
]
