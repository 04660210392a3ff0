"""The data: the Kaggle catalogue and its splits (catalogue), decoding images (images) and
cutouts (cutouts: FITS, catalogues of one's own), the decoded-image cache (cache), a user's labels
CSV (labels), augmentation and test-time views (transforms), fetching and unpacking the Kaggle data
(fetch, archive) and the synthetic data set (synthetic, rendering).

Layer rule: a module here imports from ``galaxyzoo_cli.data`` and ``galaxyzoo_cli.core`` only.
"""
