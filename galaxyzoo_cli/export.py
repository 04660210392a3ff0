"""Export a run's model for deployment: ONNX (through onnxscript, run by onnxruntime) or
TorchScript, with the normalisation inside and a dynamic batch axis, and the input spec written
beside the file (``<file>.json``) so that another program feeds it exactly what it was trained on.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaxyzoo_cli import provenance
from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.files import atomic_path, write_json_atomic
from galaxyzoo_cli.models.network import fuse_for_inference
from galaxyzoo_cli.progress import SILENT, Reporter
from galaxyzoo_cli.runs import load_checkpoint, resolve_run
from galaxyzoo_cli.schema import COLUMNS
from galaxyzoo_cli.settings import ExportFormat, choice

_SUFFIX = {ExportFormat.ONNX: ".onnx", ExportFormat.TORCHSCRIPT: ".torchscript.pt"}
_INSTALL = "pip install 'galaxyzoo-cli[onnx]'"


@dataclass
class ExportResult:
    out: Path
    spec: Path
    format: str
    max_abs_difference: float | None
    """Largest difference between the exported model and PyTorch on a test batch (None: not
    checked, onnxruntime missing)."""
    seconds: float
    provenance: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "spec": str(self.spec),
            "format": self.format,
            "max_abs_difference": self.max_abs_difference,
            "seconds": self.seconds,
            "provenance": self.provenance,
        }

    def summary(self) -> str:
        check = (
            "not checked (onnxruntime is not installed)"
            if self.max_abs_difference is None
            else f"checked against PyTorch: max difference {self.max_abs_difference:.1e}"
        )
        return f"Wrote {self.out} ({self.format}; {check}) and its input spec {self.spec}."


def export(
    run: str | os.PathLike[str],
    *,
    format: ExportFormat | str = ExportFormat.ONNX,
    out: Path | None = None,
    reporter: Reporter = SILENT,
) -> ExportResult:
    """Write the run's model as ONNX or TorchScript to ``out`` (default: in the run folder,
    ``model.onnx`` or ``model.torchscript.pt``), and ``<out>.json``: the input spec (channels,
    relative crop, size, value range, layout), the 37 output columns and the provenance.

    The exported network takes float32 images (N, C, S, S) in [0, 1] and returns (N, 37): the
    normalisation is inside. The export is checked against PyTorch on a random batch.
    """
    start = time.perf_counter()
    kind = choice(ExportFormat, format, "--format")
    ref = resolve_run(run)
    ckpt = load_checkpoint(ref.checkpoint)
    model = fuse_for_inference(ckpt.build_model())  # what predict runs
    spec = ckpt.model.input
    if spec.size is None:
        raise BadInputError(f"{ref.checkpoint}: the model has no fixed input size to export.")
    example = torch.rand(2, spec.channels, spec.size, spec.size)
    prov = provenance.record("export", [provenance.run_entry(ref.run_dir, ref.checkpoint)],
                             format=kind.value)  # fmt: skip
    target = provenance.output_path(ref.run_dir / f"model{_SUFFIX[kind]}", out, prov, reporter)
    with atomic_path(target, suffix=_SUFFIX[kind]) as tmp:
        if kind == ExportFormat.ONNX:
            _onnx(model, example, tmp)
        else:
            with _quiet():
                torch.jit.trace(model, example).save(str(tmp))
    difference = _check(kind, target, model, spec.channels, spec.size)
    about = {
        "format": kind.value,
        "input": {
            "name": "images",
            "shape": ["batch", spec.channels, spec.size, spec.size],
            "dtype": "float32",
            "layout": "NCHW",
            "channels": spec.channels,
            "value_range": [0.0, 1.0],
            "colour": "RGB" if spec.channels == 3 else "grayscale (PIL 'L')",
            "crop": spec.crop,
            "crop_note": "side of the centred square in pixels of a 424-px frame; scale it with "
            "the image (crop × side / 424), then resize to size × size (bilinear)",
            "size": spec.size,
            "normalisation": "inside the model",
            "mean": list(spec.mean),
            "std": list(spec.std),
        },
        "output": {
            "name": "answers",
            "shape": ["batch", len(COLUMNS)],
            "columns": list(COLUMNS),
            **ckpt.model.learned.as_dict(),
            "untrained_note": "the answers of untrained questions are the model's prior (the "
            "tree's even split), not a measurement: leave them out of science use",
        },
        "model": ckpt.model.as_dict(),
        "provenance": prov,
    }
    spec_path = provenance.sidecar(target)
    write_json_atomic(spec_path, about)
    return ExportResult(
        target, spec_path, kind.value, difference, time.perf_counter() - start, prov
    )


def _onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise BadInputError(f"--format onnx needs onnx and onnxscript: {_INSTALL}") from None
    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["images"],
            output_names=["answers"],
            dynamic_shapes={"images": {0: batch}},
            verbose=False,
        )


def _check(
    kind: ExportFormat, path: Path, model: torch.nn.Module, channels: int, size: int
) -> float | None:
    """Max |exported − PyTorch| on a batch of 3 random images (another batch size than at
    export: the batch axis must be dynamic)."""
    x = torch.rand(3, channels, size, size)
    with torch.no_grad():
        expected = model(x).numpy()
    if kind == ExportFormat.TORCHSCRIPT:
        with _quiet():
            got = torch.jit.load(str(path))(x).detach().numpy()
    else:
        try:
            import onnxruntime as ort
        except ImportError:
            return None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": x.numpy()})[0]
    return float(np.abs(got - expected).max())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """PyTorch's exporters print progress and deprecation notes; a command's output is ours."""
    with (
        warnings.catch_warnings(),
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stdout(devnull),
    ):
        warnings.simplefilter("ignore")
        yield
