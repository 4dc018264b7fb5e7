"""Applications on real data: smoothing a series, tagging and classifying sentences.

Submodules are imported on use (they pull in optional dependencies such as matplotlib or arch):

    selfattention.apps.smoothing   # parameter-free self-attention smoothing, Y = W X
    selfattention.apps.training    # seed, fit loop, safetensors checkpoints, metrics
    selfattention.apps.datasets    # registry of offline data sets: fetch(name) -> Path
    selfattention.apps.text        # POS tagging and sentence polarity
"""
