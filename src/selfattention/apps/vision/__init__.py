"""Images as sets of patch vectors: a small vision transformer, its data and its attention views.

selfattention.apps.vision.config      # ImageTaskConfig (frozen), each data set's defaults
selfattention.apps.vision.data        # idx reader, Fashion-MNIST, 8x8 digits, image files
selfattention.apps.vision.model       # VisionTransformer (ViTConfig), the same-size MLP baseline
selfattention.apps.vision.train       # train(config, splits, checkpoint) -> metrics
selfattention.apps.vision.classifier  # load_classifier, evaluate(clf, splits), predict(clf, images)
selfattention.apps.vision.inspect     # patch attention and rollout as figures (`viz image`)

Nothing here parses arguments or prints: the command line (``selfattention train|evaluate|predict
images``, ``selfattention viz image``) lives in :mod:`selfattention.cli`.
"""
