"""Images as sets of patch vectors: a small vision transformer, its data and its attention views.

    selfattention.apps.vision.data    # idx reader, Fashion-MNIST, scikit-learn's 8x8 digits
    selfattention.apps.vision.model   # VisionTransformer (ViTConfig), the same-size MLP baseline
    selfattention.apps.vision.train   # `selfattention train|evaluate|predict images`
    selfattention.apps.vision.viz     # `selfattention viz image`: patch attention and rollout
"""
