"""Training: ``train()`` and ``select_init()``, early stopping, checkpoints, resume.

The loop in :func:`_fit` reads top to bottom. Images are decoded once into the uint8 cache
(:mod:`galaxyzoo_cli.cache`); batches are sliced from it and augmented as tensors. With a frozen
backbone and no augmentation, each image's features are computed once and only the head trains.
The device and the process's rank are decided once (:func:`galaxyzoo_cli.device.setup_runtime`) and
only the main process writes files.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxyzoo_cli.data import Catalogue, Preprocess, load_catalogue
from galaxyzoo_cli.errors import BadInputError, JobFailedError
from galaxyzoo_cli.files import write_text_atomic
from galaxyzoo_cli.progress import SILENT, Reporter

if TYPE_CHECKING:
    import torch

    from galaxyzoo_cli.device import Runtime
    from galaxyzoo_cli.models import GalaxyModel, ModelConfig

DEFAULT_MODEL = "galaxynet"
VAL_SPLITS = ("last", "random")
OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. ``None`` means: the model's own default."""

    model: str = DEFAULT_MODEL
    head: str = "tree"
    loss: str = "mse"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    channels: int | None = None
    image_size: int | None = None
    crop: int | None = None
    augment: bool | None = None
    val_fraction: float = 0.1
    val_split: str = "last"
    limit: int | None = None
    seed: int = 0
    patience: int = 5
    pretrained: bool | None = None
    weights: str | None = None
    freeze: bool | None = None
    workers: int | None = None
    name: str | None = None
    device: str = "auto"
    amp: bool = True
    cache: bool = True

    def check(self) -> None:
        """Reject impossible settings, naming the flag."""
        from galaxyzoo_cli.losses import check_loss

        check_loss(self.loss)
        if self.epochs < 1:
            raise BadInputError(f"--epochs {self.epochs}: give at least 1.")
        if self.batch_size < 1:
            raise BadInputError(f"--batch-size {self.batch_size}: give at least 1.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BadInputError(f"--lr {self.lr}: give a positive learning rate such as 1e-3.")
        if not 0 <= self.val_fraction < 1:
            raise BadInputError(f"--val-fraction {self.val_fraction}: give a value in [0, 1).")
        if self.val_split not in VAL_SPLITS:
            raise BadInputError(f"--val-split {self.val_split!r}: use {' or '.join(VAL_SPLITS)}.")
        if self.optimizer not in OPTIMIZERS:
            raise BadInputError(f"--optimizer {self.optimizer!r}: use {' or '.join(OPTIMIZERS)}.")
        if self.schedule not in SCHEDULES:
            raise BadInputError(f"--schedule {self.schedule!r}: use {' or '.join(SCHEDULES)}.")
        if self.limit is not None and self.limit < 2:
            raise BadInputError(f"--limit {self.limit}: give at least 2 images.")
        if self.patience < 0:
            raise BadInputError(f"--patience {self.patience}: give 0 (off) or more epochs.")


@dataclass
class TrainResult:
    run_dir: Path
    model: str
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    best_val_rmse: float
    baseline_val_rmse: float
    """RMSE of predicting the training means on the validation split."""
    n_train: int
    n_val: int
    seconds: float
    images_per_second: float
    stopped_early: bool
    device: str
    trials: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        return d

    def summary(self) -> str:
        lines = [
            f"Run {self.run_dir}: {self.model}, {self.epochs_run} epochs in {self.seconds:.1f} s "
            f"({self.images_per_second:.0f} images/s)"
            + (", stopped early" if self.stopped_early else ""),
        ]
        if self.n_val:
            lines.append(
                f"Best epoch {self.best_epoch}: validation RMSE {self.best_val_rmse:.5f} "
                f"(training-mean baseline {self.baseline_val_rmse:.5f}) on {self.n_val} galaxies"
            )
        if self.trials:
            best = min(self.trials, key=lambda t: t["val_loss"])
            lines.append(
                f"select-init: kept trial {int(best['trial'])} of {len(self.trials)} "
                f"(validation loss {best['val_loss']:.5f})"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def split_indices(
    ids: np.ndarray, val_fraction: float, method: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation positions. ``last``: the highest GalaxyIDs (the winner's split);
    ``random``: a seeded random fraction. Both sorted."""
    n_val = int(math.ceil(len(ids) * val_fraction)) if val_fraction > 0 else 0
    n_val = min(n_val, len(ids) - 1)
    if method == "last":
        order = np.argsort(ids, kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(len(ids))
    val = np.sort(order[len(ids) - n_val :]) if n_val else np.empty(0, dtype=np.int64)
    train = np.sort(order[: len(ids) - n_val])
    return train, val


@dataclass
class _Data:
    """Training and validation images (uint8, in memory or on the GPU) and their labels."""

    x_train: np.ndarray | torch.Tensor
    y_train: np.ndarray
    x_val: np.ndarray | torch.Tensor
    y_val: np.ndarray


def _load_split(
    cat: Catalogue, val_ids: np.ndarray, prep: Preprocess, config: TrainConfig, reporter: Reporter
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from galaxyzoo_cli.cache import load_images

    images = load_images(
        cat.paths, prep, workers=config.workers, reporter=reporter, use_cache=config.cache
    )
    is_val = np.isin(cat.ids, val_ids)
    tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    return images[tr], cat.labels[tr], images[va], cat.labels[va]


@dataclass
class _Setup:
    """Everything a fit needs, resolved once."""

    config: TrainConfig
    """Fully resolved: no setting is left to the model's defaults."""
    model_config: ModelConfig
    runtime: Runtime
    prep: Preprocess
    data: _Data
    catalogue: Catalogue
    val_ids: np.ndarray


def _prepare(
    config: TrainConfig,
    data_dir: Path,
    runtime: Runtime,
    reporter: Reporter,
    val_ids: np.ndarray | None = None,
) -> _Setup:
    """Resolve the settings, split the data and decode the images (or compute features)."""
    from galaxyzoo_cli.models import get_spec, resolve_config

    config.check()
    spec = get_spec(config.model)
    mcfg = resolve_config(
        config.model,
        head=config.head,
        channels=config.channels,
        image_size=config.image_size,
        freeze=config.freeze,
    )
    pretrained = spec.pretrained if config.pretrained is None else config.pretrained
    if config.weights is not None:
        pretrained = True
    if config.freeze and not pretrained:
        reporter.log(
            "Note: --freeze without pretrained weights trains the head on random features."
        )
    augment = (not mcfg.freeze) if config.augment is None else config.augment
    config = replace(
        config,
        model=mcfg.name,
        channels=mcfg.channels,
        image_size=mcfg.image_size,
        crop=spec.crop if config.crop is None else config.crop,
        freeze=mcfg.freeze,
        pretrained=pretrained,
        augment=augment,
    )
    prep = Preprocess(channels=mcfg.channels, crop=config.crop, image_size=mcfg.image_size)

    cat = load_catalogue(data_dir)
    if config.limit is not None:
        cat = cat.subset(np.arange(min(config.limit, len(cat))))
    if len(cat) < 2:
        raise BadInputError(f"{data_dir}: only {len(cat)} labelled image(s); training needs 2+.")
    if val_ids is None:
        _, val_pos = split_indices(cat.ids, config.val_fraction, config.val_split, config.seed)
        val_ids = cat.ids[val_pos]
    x_tr, y_tr, x_va, y_va = _load_split(cat, val_ids, prep, config, reporter)
    x_train, x_val = _on_gpu_if_it_fits(runtime, x_tr, x_va, reporter)
    data = _Data(x_train, y_tr, x_val, y_va)
    return _Setup(config, mcfg, runtime, prep, data, cat, val_ids)


def _on_gpu_if_it_fits(
    runtime: Runtime, x_train: np.ndarray, x_val: np.ndarray, reporter: Reporter
) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
    """On CUDA, keep the uint8 images on the GPU when they need under a quarter of its free
    memory (all 61,578 Kaggle images at 64 px RGB take 0.76 GB): batches are then sliced there
    and no step waits for a host-to-device copy."""
    if runtime.device.type != "cuda":
        return x_train, x_val
    import torch

    free, _ = torch.cuda.mem_get_info(runtime.device)
    if x_train.nbytes + x_val.nbytes > free // 4:
        return x_train, x_val
    reporter.log(
        f"Images kept on {runtime.device} ({(x_train.nbytes + x_val.nbytes) / 1e9:.2f} GB)."
    )
    return tuple(  # type: ignore[return-value]
        torch.from_numpy(np.ascontiguousarray(x)).to(runtime.device) for x in (x_train, x_val)
    )


def _take(x: np.ndarray | torch.Tensor, idx: np.ndarray) -> np.ndarray | torch.Tensor:
    """Rows ``idx`` of a NumPy array or (GPU) tensor."""
    if isinstance(x, np.ndarray):
        return x[idx]
    import torch

    return x[torch.from_numpy(idx).to(x.device)]


def _build_model(setup: _Setup, seed: int) -> GalaxyModel:
    import torch

    from galaxyzoo_cli.models import create_model

    c = setup.config
    torch.manual_seed(seed)
    model = create_model(setup.model_config, pretrained=bool(c.pretrained), weights=c.weights)
    return model.to(setup.runtime.device)


@dataclass
class _Features:
    """Frozen-backbone features of the training and validation images, computed once."""

    train: torch.Tensor
    val: torch.Tensor
    seconds: float


def _compute_features(model: GalaxyModel, setup: _Setup, reporter: Reporter) -> _Features:
    import torch

    start = time.perf_counter()
    model.eval()
    out = []
    for name, x in (("training", setup.data.x_train), ("validation", setup.data.x_val)):
        feats = []
        with reporter.task(f"Features ({name})", len(x)) as task, torch.no_grad():
            for s in range(0, len(x), 256):
                batch = _to_images(x[s : s + 256], setup.runtime.device)
                with _autocast(setup):
                    feats.append(model.embed(batch).float().cpu())
                task.advance(len(batch))
        dim = int(model.features.num_features)  # type: ignore[arg-type]
        out.append(torch.cat(feats) if feats else torch.empty(0, dim))
    return _Features(out[0], out[1], time.perf_counter() - start)


def _to_images(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    t = t.to(device, non_blocking=True)
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()


def _autocast(setup: _Setup) -> Any:
    import torch

    if setup.runtime.device.type == "cuda" and setup.config.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


@dataclass
class _State:
    """What survives an epoch: the fit's counters and history."""

    epoch: int = 0
    best_val_loss: float = math.inf
    best_val_rmse: float = math.nan
    best_epoch: int = 0
    bad_epochs: int = 0
    metrics: list[dict[str, float]] = field(default_factory=list)
    images_seen: int = 0
    train_seconds: float = 0.0


def _lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


def _make_optimizer(model: GalaxyModel, config: TrainConfig) -> torch.optim.Optimizer:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _evaluate(
    model: GalaxyModel,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray,
    setup: _Setup,
    features: bool,
) -> tuple[float, float]:
    """Loss (mean over labelled cells, as in training) and Kaggle RMSE on a held-out set.

    In a distributed run each rank scores its share and the sums are combined, so every rank gets
    the same figures (and takes the same early-stopping decision).
    """
    import torch

    from galaxyzoo_cli.losses import masked_loss
    from galaxyzoo_cli.metrics import ErrorSum

    rt = setup.runtime
    share = np.arange(rt.rank, len(y), rt.world_size)
    model.eval()
    errors = ErrorSum()
    loss_sum, loss_cells = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(share), 512):
            idx = share[s : s + 512]
            xb = _to_images(_take(x, idx), rt.device)
            yb = torch.from_numpy(y[idx]).to(rt.device)
            with _autocast(setup):
                pred = model.head(xb) if features else model(xb)
            pred = pred.float()
            cells = int((~torch.isnan(yb)).sum())
            loss_sum += float(masked_loss(setup.config.loss, pred, yb)) * cells
            loss_cells += cells
            errors.add(pred.cpu().numpy(), y[idx])
    errors.sse, errors.count, loss_sum, loss_cells = _all_reduce_sums(
        rt, errors.sse, errors.count, loss_sum, loss_cells
    )
    loss = loss_sum / max(1, loss_cells)
    if setup.config.loss == "rmse":
        loss = errors.rmse  # the RMSE of the whole set, not a mean of batch RMSEs
    return loss, errors.rmse


def _all_reduce_sums(runtime: Runtime, *values: float) -> list[Any]:
    """Sum plain numbers over the ranks of a distributed run (unchanged otherwise)."""
    if not runtime.distributed:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return [type(v)(x) for v, x in zip(values, t.tolist(), strict=True)]


@contextlib.contextmanager
def _interrupt_message(state: _State, run_dir: Path | None, epochs: int) -> Iterator[None]:
    """Ctrl-C: stop with a message saying what was kept and how to continue."""
    try:
        yield
    except KeyboardInterrupt:
        if run_dir is None:
            raise JobFailedError(f"interrupted in epoch {state.epoch + 1}.") from None
        raise JobFailedError(
            f"interrupted after epoch {state.epoch}; {run_dir}/weights/last.pt holds it. "
            f"Continue with: galaxyzoo train --resume {run_dir} --epochs {epochs}"
        ) from None


def _fit(
    model: GalaxyModel,
    setup: _Setup,
    run_dir: Path | None,
    reporter: Reporter,
    state: _State,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    epochs: int,
    early_stopping: bool = True,
    features: _Features | None = None,
) -> bool:
    """Train ``model`` from ``state.epoch`` up to ``epochs``; returns whether it stopped early.

    Writes metrics.csv, weights/best.pt (on improvement) and weights/last.pt (every epoch) into
    ``run_dir`` when given and this is the main process.
    """
    import torch

    from galaxyzoo_cli.losses import masked_loss
    from galaxyzoo_cli.transforms import augment_batch

    c, rt, data = setup.config, setup.runtime, setup.data
    x_train = features.train if features is not None else data.x_train
    x_val = features.val if features is not None else data.x_val
    use_features = features is not None
    n_train = len(data.y_train)
    per_rank = max(1, c.batch_size // rt.world_size)
    steps_per_epoch = max(1, math.ceil(n_train / (per_rank * rt.world_size)))
    total_steps = epochs * steps_per_epoch
    warmup = int(c.warmup_epochs * steps_per_epoch)
    # What the optimizer steps through: the model, or only its head on cached features. Under
    # torchrun it is wrapped so that gradients are averaged over the ranks.
    train_model: torch.nn.Module = model.head if use_features else model
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [rt.device.index] if rt.device.type == "cuda" else None
        train_model = DistributedDataParallel(train_model, device_ids=ids)
    per_epoch = n_train // rt.world_size * rt.world_size  # equal shares: ranks step in lockstep

    with _interrupt_message(state, run_dir, epochs):
        for epoch in range(state.epoch + 1, epochs + 1):
            start = time.perf_counter()
            # Shuffle (the same permutation on every rank), then take this rank's share.
            perm = torch.randperm(n_train, generator=generator).numpy()[:per_epoch]
            perm = perm[rt.rank :: rt.world_size]
            model.train()
            loss_sum, n_batches = torch.zeros((), device=rt.device), 0
            with reporter.task(f"Epoch {epoch}/{epochs}", len(perm)) as task:
                for s in range(0, len(perm), per_rank):
                    idx = np.sort(perm[s : s + per_rank])  # sorted: faster reads from the cache
                    # Learning rate for this step (warm-up, then cosine decay).
                    step = (epoch - 1) * steps_per_epoch + s // per_rank
                    for group in optimizer.param_groups:
                        group["lr"] = c.lr * _lr_factor(step, warmup, total_steps, c.schedule)
                    # Batch: uint8 → [0, 1] floats on the device, augmented as a tensor.
                    xb = _to_images(_take(x_train, idx), rt.device)
                    yb = torch.from_numpy(data.y_train[idx]).to(rt.device, non_blocking=True)
                    if setup.config.augment and not use_features:
                        xb = augment_batch(xb, generator)
                    # Forward, loss over labelled cells, backward, step.
                    with _autocast(setup):
                        pred = train_model(xb)
                    loss = masked_loss(c.loss, pred.float(), yb)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    loss_sum += loss.detach()
                    n_batches += 1
                    task.advance(len(idx))
                    # Stop a diverged epoch early (alone: ranks of a distributed run step together).
                    if not rt.distributed and n_batches % 50 == 0 and not torch.isfinite(loss_sum):
                        break
            total, batches = _all_reduce_sums(rt, float(loss_sum), float(n_batches))
            train_loss = total / max(1.0, batches)
            if not math.isfinite(train_loss):
                raise JobFailedError(
                    f"training diverged in epoch {epoch} (loss {train_loss}); the last good "
                    f"checkpoint is kept. Lower --lr (now {c.lr:g}) or try --loss mse."
                )
            # Validate: one global loss and Kaggle RMSE over all labelled cells.
            if len(data.y_val):
                val_loss, val_rmse = _evaluate(model, x_val, data.y_val, setup, use_features)
            else:
                val_loss, val_rmse = math.nan, math.nan
            seconds = time.perf_counter() - start
            state.train_seconds += seconds
            state.images_seen += n_train
            state.epoch = epoch
            state.metrics.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_rmse": val_rmse,
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": seconds,
                }
            )
            improved = not len(data.y_val) or val_loss < state.best_val_loss
            if improved:
                state.best_val_loss, state.best_val_rmse, state.best_epoch = (
                    val_loss,
                    val_rmse,
                    epoch,
                )
                state.bad_epochs = 0
            else:
                state.bad_epochs += 1
            reporter.log(
                f"epoch {epoch:3d}/{epochs}  train_loss {train_loss:.5f}  val_loss {val_loss:.5f}  "
                f"val_rmse {val_rmse:.5f}  {seconds:5.1f}s" + ("  *" if improved else "")
            )
            # Checkpoints: best on improvement, last every epoch (what --resume continues).
            if run_dir is not None and rt.is_main:
                from galaxyzoo_cli.runs import save_checkpoint, write_metrics

                info = _checkpoint_info(setup, state)
                if improved:
                    save_checkpoint(run_dir / "weights" / "best.pt", model, setup.prep, **info)
                save_checkpoint(
                    run_dir / "weights" / "last.pt",
                    model,
                    setup.prep,
                    **info,
                    optimizer_state=optimizer.state_dict(),
                    rng_state=generator.get_state(),
                )
                write_metrics(run_dir, state.metrics)
            if early_stopping and c.patience and state.bad_epochs >= c.patience:
                reporter.log(f"Early stop: no improvement for {c.patience} epochs.")
                return True
    return False


def _checkpoint_info(setup: _Setup, state: _State) -> dict[str, Any]:
    return {
        "settings": asdict(setup.config),
        "epoch": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val_loss,
        "best_val_rmse": state.best_val_rmse,
        "bad_epochs": state.bad_epochs,
        "images_seen": state.images_seen,
        "train_seconds": state.train_seconds,
    }


def _baseline_rmse(setup: _Setup) -> float:
    from galaxyzoo_cli.metrics import column_means, kaggle_rmse

    if not len(setup.data.y_val):
        return math.nan
    means = column_means(setup.data.y_train)
    return kaggle_rmse(np.broadcast_to(means, setup.data.y_val.shape), setup.data.y_val)


def _write_run_config(run_dir: Path, setup: _Setup, data_dir: Path, extra: dict[str, Any]) -> None:
    from galaxyzoo_cli.runs import write_config

    c = setup.config
    write_config(
        run_dir,
        {
            "command": extra.pop("command", "train"),
            "settings": asdict(c),
            "model": setup.model_config.as_dict(),
            "preprocess": setup.prep.as_dict(),
            "device": str(setup.runtime.device),
            "world_size": setup.runtime.world_size,
            "data": {
                "data_dir": str(data_dir.resolve()),
                "n_labelled": len(setup.catalogue),
                "n_train": len(setup.data.y_train),
                "n_val": len(setup.data.y_val),
                "n_missing_cells_train": int(np.isnan(setup.data.y_train).sum()),
                "val_ids": [int(i) for i in setup.val_ids],
            },
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra,
        },
    )


def _restore_best(model: GalaxyModel, run_dir: Path | None) -> None:
    """Put the best epoch's weights back into ``model`` (early stopping restores the best)."""
    if run_dir is not None and (run_dir / "weights" / "best.pt").is_file():
        from galaxyzoo_cli.runs import load_checkpoint

        model.load_state_dict(load_checkpoint(run_dir / "weights" / "best.pt")["model_state"])


def _result(
    setup: _Setup,
    run_dir: Path | None,
    state: _State,
    stopped: bool,
    seconds: float,
    trials: list[Any],
) -> TrainResult:
    return TrainResult(
        run_dir=run_dir or Path(),
        model=setup.config.model,
        epochs_run=state.epoch,
        best_epoch=state.best_epoch,
        best_val_loss=state.best_val_loss,
        best_val_rmse=state.best_val_rmse,
        baseline_val_rmse=_baseline_rmse(setup),
        n_train=len(setup.data.y_train),
        n_val=len(setup.data.y_val),
        seconds=seconds,
        images_per_second=state.images_seen / max(state.train_seconds, 1e-9),
        stopped_early=stopped,
        device=str(setup.runtime.device),
        trials=trials,
    )


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def train(
    config: TrainConfig | None = None,
    *,
    data_dir: Path = Path("data"),
    runs_dir: Path = Path("runs"),
    resume: Path | None = None,
    reporter: Reporter = SILENT,
) -> TrainResult:
    """Train one model into a new run folder (or continue ``resume`` in place).

    With ``resume``, the run's saved settings are used and training continues from its
    weights/last.pt up to ``config.epochs`` epochs in total.
    """
    import torch

    from galaxyzoo_cli.runs import read_metrics

    start = time.perf_counter()
    config = config or TrainConfig()
    ckpt: dict[str, Any] | None = None
    val_ids = None
    run_dir: Path | None = None
    if resume is not None:
        config, data_dir, val_ids, ckpt, resumed = _resume_setup(resume, config)
        run_dir = resumed
    setup, reporter = _start(config, data_dir, reporter, val_ids)
    model = _build_model(setup, config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = _make_optimizer(model, setup.config)
    state = _State()
    if ckpt is not None:
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        generator.set_state(ckpt["rng_state"])
        state = _State(
            epoch=int(ckpt["epoch"]),
            best_val_loss=float(ckpt["best_val_loss"]),
            best_val_rmse=float(ckpt["best_val_rmse"]),
            best_epoch=int(ckpt["best_epoch"]),
            bad_epochs=int(ckpt["bad_epochs"]),
            metrics=read_metrics(resumed),
            images_seen=int(ckpt["images_seen"]),
            train_seconds=float(ckpt["train_seconds"]),
        )
        reporter.log(f"Resuming {run_dir} at epoch {state.epoch + 1} of {setup.config.epochs}.")
    else:
        run_dir = _new_run(runs_dir, setup, data_dir, {}) if setup.runtime.is_main else None
    features = _maybe_features(model, setup, reporter)
    return _train_to_the_end(
        model, setup, run_dir, reporter, state, optimizer, generator, features, start, []
    )


def _start(
    config: TrainConfig, data_dir: Path, reporter: Reporter, val_ids: np.ndarray | None = None
) -> tuple[_Setup, Reporter]:
    """Decide the runtime (device, rank), seed, and prepare the data. Only rank 0 reports."""
    from galaxyzoo_cli.device import seed_everything, setup_runtime

    runtime = setup_runtime(config.device)
    reporter.log(runtime.banner())
    seed_everything(config.seed)
    reporter = reporter if runtime.is_main else SILENT
    return _prepare(config, data_dir, runtime, reporter, val_ids), reporter


def _train_to_the_end(
    model: GalaxyModel,
    setup: _Setup,
    run_dir: Path | None,
    reporter: Reporter,
    state: _State,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    features: _Features | None,
    start: float,
    trials: list[dict[str, float]],
) -> TrainResult:
    """Fit up to the configured epochs, restore the best weights, end the runtime, report."""
    stopped = _fit(
        model, setup, run_dir, reporter, state, optimizer, generator,
        setup.config.epochs, features=features,
    )  # fmt: skip
    _restore_best(model, run_dir)
    setup.runtime.close()
    return _result(setup, run_dir, state, stopped, time.perf_counter() - start, trials)


def _new_run(runs_dir: Path, setup: _Setup, data_dir: Path, extra: dict[str, Any]) -> Path:
    from galaxyzoo_cli.runs import create_run_dir

    name = setup.config.name or setup.config.model.replace("/", "-")
    run_dir = create_run_dir(runs_dir, name)
    _write_run_config(run_dir, setup, data_dir, extra)
    return run_dir


def _maybe_features(model: GalaxyModel, setup: _Setup, reporter: Reporter) -> _Features | None:
    if not (setup.config.freeze and not setup.config.augment):
        return None
    feats = _compute_features(model, setup, reporter)
    n = len(setup.data.y_train) + len(setup.data.y_val)
    reporter.log(
        f"Frozen features of {n} images computed once in {feats.seconds:.1f} s; "
        "training the head on them."
    )
    return feats


def _resume_setup(
    resume: Path, override: TrainConfig
) -> tuple[TrainConfig, Path, np.ndarray, dict[str, Any], Path]:
    from galaxyzoo_cli.runs import load_checkpoint, read_config, resolve_run

    ref = resolve_run(resume, prefer="last")
    run_cfg = read_config(ref.run_dir)
    ckpt = load_checkpoint(ref.run_dir / "weights" / "last.pt")
    saved = TrainConfig(**run_cfg["settings"])
    epochs = override.epochs if override.epochs != TrainConfig.epochs else saved.epochs
    if epochs <= int(ckpt["epoch"]):
        raise BadInputError(
            f"--resume {resume}: the run already has {ckpt['epoch']} epochs; "
            f"give --epochs larger than that to continue."
        )
    config = replace(saved, epochs=epochs, device=override.device, workers=override.workers)
    data_dir = Path(run_cfg["data"]["data_dir"])
    val_ids = np.asarray(run_cfg["data"]["val_ids"], dtype=np.int64)
    return config, data_dir, val_ids, ckpt, ref.run_dir


def select_init(
    config: TrainConfig | None = None,
    *,
    trials: int = 10,
    trial_epochs: int = 1,
    data_dir: Path = Path("data"),
    runs_dir: Path = Path("runs"),
    reporter: Reporter = SILENT,
) -> TrainResult:
    """Short trainings from ``trials`` fresh initialisations; keep the best; train it on.

    Trial ``k`` is seeded with ``seed + k``. The best trial (lowest validation loss) is kept as a
    deep copy of its weights and optimizer state (saved as weights/init.pt), then trained on to
    ``config.epochs`` epochs in total. Every trial is recorded in trials.csv.
    """
    import torch

    start = time.perf_counter()
    config = config or TrainConfig()
    if trials < 1:
        raise BadInputError(f"--trials {trials}: give at least 1.")
    if not 1 <= trial_epochs < config.epochs:
        raise BadInputError(
            f"--trial-epochs {trial_epochs}: give at least 1 and fewer than --epochs "
            f"({config.epochs})."
        )
    if config.val_fraction <= 0:
        raise BadInputError("--val-fraction 0: select-init needs a validation split to compare.")
    setup, reporter = _start(config, data_dir, reporter)
    extra = {"command": "select-init", "trials": trials, "trial_epochs": trial_epochs}
    run_dir = _new_run(runs_dir, setup, data_dir, extra) if setup.runtime.is_main else None

    records: list[dict[str, float]] = []
    best: dict[str, Any] | None = None
    features: _Features | None = None
    for k in range(1, trials + 1):
        trial_start = time.perf_counter()
        seed = config.seed + k
        model = _build_model(setup, seed)
        if features is None:
            features = _maybe_features(model, setup, reporter)  # the backbone is the same each time
        generator = torch.Generator().manual_seed(seed)
        optimizer = _make_optimizer(model, setup.config)
        state = _State()
        reporter.log(f"Trial {k}/{trials} (seed {seed})")
        _fit(
            model, setup, None, reporter, state, optimizer, generator,
            trial_epochs, early_stopping=False, features=features,
        )  # fmt: skip
        record = {
            "trial": k,
            "seed": seed,
            "val_loss": state.metrics[-1]["val_loss"],
            "val_rmse": state.metrics[-1]["val_rmse"],
            "seconds": time.perf_counter() - trial_start,
        }
        records.append(record)
        if best is None or record["val_loss"] < best["record"]["val_loss"]:
            # A deep copy: later trials must not overwrite the kept weights (the notebook's bug).
            best = {
                "record": record,
                "model_state": copy.deepcopy(model.state_dict()),
                "optimizer_state": copy.deepcopy(optimizer.state_dict()),
                "generator_state": generator.get_state(),
                "state": copy.deepcopy(state),
            }
        if run_dir is not None:
            _write_trials(run_dir, records)
    assert best is not None
    reporter.log(
        f"Best trial: {int(best['record']['trial'])} "
        f"(validation loss {best['record']['val_loss']:.5f}); training it on."
    )
    model = _build_model(setup, config.seed)
    model.load_state_dict(best["model_state"])
    optimizer = _make_optimizer(model, setup.config)
    optimizer.load_state_dict(best["optimizer_state"])
    generator = torch.Generator()
    generator.set_state(best["generator_state"])
    state = best["state"]
    if run_dir is not None:
        from galaxyzoo_cli.runs import save_checkpoint

        info = _checkpoint_info(setup, state)
        save_checkpoint(run_dir / "weights" / "init.pt", model, setup.prep, **info)
    return _train_to_the_end(
        model, setup, run_dir, reporter, state, optimizer, generator, features, start, records
    )


def _write_trials(run_dir: Path, records: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["trial", "seed", "val_loss", "val_rmse", "seconds"])
    writer.writeheader()
    for r in records:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text_atomic(run_dir / "trials.csv", buf.getvalue())
