"""``python -m ripik_clf audit``: duplicates, leaks, suspected label errors and outliers.

``signals`` computes per-image signals (file and pixel digests, a perceptual hash),
``findings`` turns signals and features into findings (pure functions), ``runner`` runs it
on a dataset and ``report`` writes ``audit.csv``, ``audit.md`` and the contact sheets.
"""
