"""Export a run's model for deployment: ONNX (through onnxscript, run by onnxruntime) or
TorchScript, with the normalisation inside and a dynamic batch axis, and the input spec written
beside the file (``<file>.json``) so that another program feeds it exactly what it was trained on.

An ONNX file holds its weights (a model over 2 GB cannot: its weights then go to a visible
``<file>.data`` beside it, which the export lists among the files to copy). The files are made in
a temporary folder, checked there, and moved into place, so nothing hidden is left behind.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaxyzoo_cli.core import provenance
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.files import write_json_atomic
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.core.schema import COLUMNS
from galaxyzoo_cli.core.settings import ExportFormat, choice
from galaxyzoo_cli.core.tasks import Task
from galaxyzoo_cli.models.galaxy_model import fuse_for_inference
from galaxyzoo_cli.training.run_folder import load_checkpoint, resolve_run

_SUFFIX = {ExportFormat.ONNX: ".onnx", ExportFormat.TORCHSCRIPT: ".torchscript.pt"}
_INSTALL = "pip install 'galaxyzoo-cli[onnx]'"
INLINE_LIMIT = 1_800_000_000
"""Weights (bytes) above which an ONNX file keeps them in ``<file>.data``: a protobuf cannot
exceed 2 GB, and the graph needs room too."""


@dataclass
class ExportResult:
    out: Path
    spec: Path
    files: list[Path]
    """Every file a deployment needs (model, weights data if any, input spec): copy all of them."""
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
            "files": [str(f) for f in self.files],
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
        data = [f.name for f in self.files if f not in (self.out, self.spec)]
        weights = f" with its weights in {', '.join(data)}" if data else ""
        names = ", ".join(f.name for f in self.files)
        return (
            f"Wrote {self.out} ({self.format}{weights}; {check}) and its input spec "
            f"{self.spec.name}. To deploy, copy these {len(self.files)} files together: {names}."
        )


def export(
    run: str | os.PathLike[str],
    *,
    format: ExportFormat | str = ExportFormat.ONNX,
    out: Path | None = None,
    reporter: Reporter = SILENT,
) -> ExportResult:
    """Write the run's model as ONNX or TorchScript to ``out`` (default: in the run folder,
    ``model.onnx`` or ``model.torchscript.pt``), and ``<out>.json``: the input spec (channels,
    relative crop, size, value range, layout), the output columns (the 37 answers, or a finetuned
    task's) and the provenance.

    The exported network takes float32 images (N, C, S, S) in [0, 1] and returns (N, outputs): the
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
    with _staging(target) as folder:
        staged = folder / target.name
        if kind == ExportFormat.ONNX:
            _onnx(model, example, staged, external=_weight_bytes(model) > INLINE_LIMIT)
        else:
            with _quiet():
                torch.jit.trace(model, example).save(str(staged))
        difference = _check(kind, staged, model, spec.channels, spec.size)
        made = sorted(folder.iterdir(), key=lambda f: f == staged)  # data first, the model last
        files = [target, *(target.with_name(f.name) for f in made if f != staged)]
        _install(made, target)
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
        "output": _output(ckpt.model.task),
        "model": ckpt.model.as_dict(),
        "files": [f.name for f in [*files, provenance.sidecar(target)]],
        "provenance": prov,
    }
    spec_path = provenance.sidecar(target)
    write_json_atomic(spec_path, about)
    return ExportResult(
        target, spec_path, [*files, spec_path], kind.value, difference,
        time.perf_counter() - start, prov,
    )  # fmt: skip


def _output(task: Task) -> dict[str, Any]:
    """The output side of the spec: the 37 answers, or a finetuned task's columns (a binary
    column is P(class = its positive class); a multi-class target's columns sum to 1)."""
    if task.is_tree:
        return {
            "name": "answers",
            "shape": ["batch", len(COLUMNS)],
            "columns": list(COLUMNS),
            **task.learned.as_dict(),
            "untrained_note": "the answers of untrained questions are the model's prior (the "
            "tree's even split), not a measurement: leave them out of science use",
        }
    return {
        "name": "answers",
        "shape": ["batch", task.n_outputs],
        "columns": list(task.output_columns),
        "task": task.as_dict(),
        "meaning": "probabilities: a binary column is P(column = its second class); the "
        "columns of a multi-class target sum to 1; fraction columns are in [0, 1]",
    }


def _weight_bytes(model: torch.nn.Module) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` (same file system: the install is a rename), removed
    with whatever is left in it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _install(made: list[Path], target: Path) -> None:
    """Move the staged files beside ``target`` (the model itself last) and remove what an earlier
    export of ``target`` left that this one does not replace: a weights file it no longer needs,
    and the hidden weights files of earlier exports (``.<name>.*.tmp.data``)."""
    names = {f.name for f in made}
    stale = [target.with_name(target.name + ".data")]
    stale += target.parent.glob(f".{glob.escape(target.name)}.*.tmp.data")
    for f in made:
        os.replace(f, target.with_name(f.name))
    for old in stale:
        if old.name not in names:
            old.unlink(missing_ok=True)


def _onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, external: bool) -> None:
    """Write ``path``: one file, or with ``external`` its weights in ``<path>.data`` beside it."""
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
            external_data=external,
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
