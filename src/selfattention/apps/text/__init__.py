"""Sentences: part-of-speech tagging (``pos``) and sentence polarity (``polarity``), with the
corpus readers and vocabularies they share (``corpus``, ``vocab``)."""
