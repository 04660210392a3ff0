"""Inference: a run loaded with its model and its predictions for image files (loading),
evaluation (evaluation: ``evaluate``, ``evaluate_labels``), prediction (prediction: ``predict``)
and export for deployment (export).

Layer rule: a module here imports from ``galaxyzoo_cli.inference``, ``training``, ``models``,
``data`` and ``core`` only.

``from galaxyzoo_cli.inference import evaluate, predict, load_run, predict_paths`` keeps working:
they are re-exported here.
"""

from galaxyzoo_cli.inference.evaluation import evaluate
from galaxyzoo_cli.inference.loading import load_run, predict_paths
from galaxyzoo_cli.inference.prediction import predict

__all__ = ["evaluate", "load_run", "predict", "predict_paths"]
