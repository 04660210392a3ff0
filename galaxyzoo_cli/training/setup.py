"""What the training loop (:func:`galaxyzoo_cli.training.loop.run_loop`) runs on.

:func:`prepare` resolves a run's settings and decodes its data once (a :class:`Setup`);
:func:`training_inputs` gives the loop its inputs: the images, or for a frozen backbone without
augmentation each image's features, computed once before the first epoch (:class:`Inputs`);
:class:`Fit` is one model in training: its optimizer, random generator, weight average, the one
step counter, and how it is validated, saved and restored. Images come from the uint8 cache
(:mod:`galaxyzoo_cli.data.cache`) and are augmented as tensors. Under torchrun only the main process
writes files.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.metrics import ErrorSum
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.core.settings import Loss, Optimizer, Schedule, TrainConfig
from galaxyzoo_cli.core.summary import criterion
from galaxyzoo_cli.core.tasks import headline, output_means, task_scores
from galaxyzoo_cli.data.cache import Rows, load_split
from galaxyzoo_cli.data.catalogue import Skipped, load_catalogue, split_ids
from galaxyzoo_cli.data.images import batch_for
from galaxyzoo_cli.models import ModelConfig, get_spec, resolve_config
from galaxyzoo_cli.models.galaxy_model import GalaxyModel, create_model
from galaxyzoo_cli.training import losses
from galaxyzoo_cli.training.device import (
    Runtime,
    autocast,
    seed_everything,
    setup_runtime,
    to_float,
)
from galaxyzoo_cli.training.run_folder import Progress, save_checkpoint, write_metrics
from galaxyzoo_cli.training.tracking import check_available

Images = Rows | np.ndarray | torch.Tensor
"""uint8 images (N, C, S, S): rows of the memory-mapped cache, or on the GPU; or float features
(N, F)."""


# ---------------------------------------------------------------------------------------------
# Setup: everything a fit needs, resolved once
# ---------------------------------------------------------------------------------------------


@dataclass
class Setup:
    config: TrainConfig
    """The settings, with pretrained and augment resolved (input options stay as given)."""
    model_config: ModelConfig
    """The model and its input spec: the one copy of channels, crop, size and normalisation."""
    runtime: Runtime
    data_dir: Path
    n_labelled: int
    val_ids: np.ndarray
    x_train: Images
    y_train: np.ndarray
    x_val: Images
    y_val: np.ndarray
    skipped: Skipped
    """Labelled galaxies left out: no image, or an unreadable one."""
    labels: Path | None = None
    """The user's labels file (``finetune``); None: the Kaggle labels of ``data_dir``."""

    @property
    def on_features(self) -> bool:
        """Whether only the head learns, on features computed once: a frozen backbone whose
        images are not augmented (each image then always gives the same features)."""
        return self.model_config.freeze and not self.config.augment

    @property
    def best_by(self) -> str:
        """The metrics.csv column that decides the best epoch (:func:`summary.criterion`)."""
        task = self.model_config.task
        return criterion(task.metric, tree=task.is_tree, monitor=self.config.monitor.value)


def prepare(
    config: TrainConfig,
    data_dir: Path,
    reporter: Reporter,
    *,
    runtime: Runtime | None = None,
    val_ids: np.ndarray | None = None,
    model_config: ModelConfig | None = None,
) -> tuple[Setup, Reporter]:
    """Seed, resolve the settings, split and decode the data on ``runtime`` (the device and
    rank chosen by the caller; None: chosen here from ``config.device``).

    ``val_ids`` and ``model_config`` are given when continuing a run. Returns the setup and the
    reporter to use from here on (silent on every rank but the main one).
    """
    config.check()
    check_available(config.log)
    runtime = runtime or setup_runtime(config.device, reporter)
    reporter = reporter if runtime.is_main else SILENT
    seed_everything(config.seed)
    spec = get_spec(config.model)
    if model_config is None:
        config.check_new_run()
        # Freezing follows the weights actually loaded: frozen random features never learn.
        pretrained, freeze = spec.weights_and_freeze(
            config.pretrained, config.weights, config.freeze
        )
        model_config = resolve_config(
            config.model,
            head=config.head,
            channels=config.channels,
            image_size=config.image_size,
            crop=config.crop,
            freeze=freeze,
        )
    else:  # continuing a run: its own choice, saved in its settings
        pretrained = config.weights is not None or bool(
            spec.has_weights if config.pretrained is None else config.pretrained
        )
    config = config.replace(
        model=model_config.name,
        pretrained=pretrained,
        augment=(not model_config.freeze) if config.augment is None else config.augment,
        warmup_epochs=config.warmup,  # fixed now: a resume with more --epochs keeps it
    )

    cat = whole = load_catalogue(data_dir)
    skipped = Skipped()
    skipped.add("missing image", cat.ids_without_image)
    if config.limit is not None:
        cat = cat.subset(np.arange(min(config.limit, len(cat))))
    if len(cat) < 2:
        raise BadInputError(f"{data_dir}: only {len(cat)} labelled image(s); training needs 2+.")
    if val_ids is None:
        val_ids = split_ids(
            cat.ids, config.val_fraction, config.val_split, config.seed, config.fold
        )
    x_tr, y_tr, x_va, y_va = load_split(
        cat,
        val_ids,
        model_config.input,
        skipped,
        workers=config.workers,
        use_cache=config.cache,
        reporter=reporter,
        whole=whole if len(whole) > len(cat) else None,
    )
    skipped.enforce(config.strict, data_dir, reporter)
    model_config = model_config.with_learned(y_tr)  # the questions it will have labels for
    x_train, x_val = runtime.keep_on_device((x_tr, x_va), reporter)
    setup = Setup(
        config, model_config, runtime, data_dir, len(cat), val_ids, x_train, y_tr, x_val, y_va,
        skipped,
    )  # fmt: skip
    return setup, reporter


def batch_of(x: Images, idx: np.ndarray) -> np.ndarray | torch.Tensor:
    """Rows ``idx`` of the inputs: cached images, an array or a (GPU) tensor."""
    if isinstance(x, (Rows, np.ndarray)):
        return x[idx]
    return x[torch.from_numpy(idx).to(x.device)]


def eval_batch_size(setup: Setup, features: bool) -> int:
    """Images per validation batch: twice the training batch (a forward without gradients keeps
    far fewer activations than a training step, so validation never sets the run's peak memory;
    512 images at 64 px made a 128-px convnext_nano run peak 20% higher), at most 512 at 64 px
    and fewer for larger inputs; features: 512."""
    if features:
        return 512
    return min(batch_for(setup.model_config.input.size, 512), 2 * setup.config.batch_size)


# ---------------------------------------------------------------------------------------------
# Inputs: images, or a frozen backbone's features computed once
# ---------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """What the loop trains and validates on."""

    train: Images
    val: Images
    features: bool
    """True: frozen-backbone features (N, F), and only the head learns; False: images."""
    images: int = 0
    """Images through the network to compute the features (0: none computed)."""
    seconds: float = 0.0
    """The time that took."""


def training_inputs(fit: Fit, reporter: Reporter) -> Inputs:
    """The setup's images; or, when :attr:`Setup.on_features`, the features of every training
    and validation image, computed once by ``fit``'s (frozen) backbone before the first epoch
    (select-init's trials all share them)."""
    setup = fit.setup
    if not setup.on_features:
        return Inputs(setup.x_train, setup.x_val, features=False)
    start = time.perf_counter()
    fit.set_mode("eval")
    feats = [_features(fit, x, name, reporter) for name, x in
             (("training", setup.x_train), ("validation", setup.x_val))]  # fmt: skip
    seconds, n_images = time.perf_counter() - start, len(setup.y_train) + len(setup.y_val)
    reporter.log(
        f"Frozen features of {n_images} images computed once in {seconds:.1f} s; "
        "training the head on them."
    )
    return Inputs(feats[0], feats[1], features=True, images=n_images, seconds=seconds)


@torch.no_grad()
def _features(fit: Fit, x: Images, name: str, reporter: Reporter) -> torch.Tensor:
    """The backbone's features (N, F) of images ``x``, on the CPU."""
    setup, model = fit.setup, fit.model
    feats = [torch.empty(0, int(model.features.num_features))]  # type: ignore[arg-type]
    step = eval_batch_size(setup, features=False)
    with reporter.task(f"Features ({name})", len(x)) as task:
        for b in range(0, len(x), step):
            index = np.arange(b, min(b + step, len(x)))
            batch = to_float(batch_of(x, index), setup.runtime.device)
            with autocast(setup.runtime.device, setup.config.amp):
                feats.append(model.embed(batch).float().cpu())
            task.advance(len(batch))
    return torch.cat(feats)


# ---------------------------------------------------------------------------------------------
# Optimizer groups and the learning-rate schedule
# ---------------------------------------------------------------------------------------------


def lr_factor(step: int, warmup: int, total: int, schedule: Schedule) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 (or constant)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == Schedule.CONSTANT:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


def all_reduce_sums(runtime: Runtime, *values: float) -> list[Any]:
    """Sum plain numbers over the ranks of a distributed run (unchanged otherwise)."""
    if not runtime.distributed:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return [type(v)(x) for v, x in zip(values, t.tolist(), strict=True)]


def _param_groups(model: GalaxyModel, decay: float) -> list[dict[str, Any]]:
    """The trainable parameters as optimizer groups, each with its ``lr_scale``: one group
    when ``decay`` is 1; else the head at 1 and the feature extractor's blocks, from the top
    down, at ``decay``, ``decay**2``… (:func:`_blocks`)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if decay == 1.0:
        return [{"params": trainable, "lr_scale": 1.0}]
    groups = [{"params": list(model.head.parameters()), "lr_scale": 1.0}]
    for depth, params in enumerate(reversed(_blocks(model.features)), start=1):
        groups.append({"params": params, "lr_scale": decay**depth})
    return groups


def _blocks(features: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
    """The feature extractor's parameters in blocks, in the order they run: a timm model's
    stages (its own coarse grouping: the stem, each stage, the final norm); for our own nets each
    convolution or linear layer with the norms after it."""
    matcher = getattr(features, "group_matcher", None)
    if callable(matcher):
        from timm.models import group_parameters

        named = dict(features.named_parameters())
        groups = group_parameters(features, matcher(coarse=True))
        return [[named[n] for n in groups[k]] for k in sorted(groups)]
    blocks: list[list[torch.nn.Parameter]] = []
    for param in features.parameters():
        if param.ndim > 1 or not blocks:  # a weight matrix or kernel starts a layer
            blocks.append([])
        blocks[-1].append(param)
    return blocks


# ---------------------------------------------------------------------------------------------
# One model in training
# ---------------------------------------------------------------------------------------------


class Fit:
    """One model in training: its optimizer, random generator, progress, the one step counter
    and (with ``--ema``) the running average of its weights, which is what gets validated and
    saved. :func:`galaxyzoo_cli.training.loop.run_loop` trains it."""

    def __init__(
        self,
        setup: Setup,
        seed: int,
        *,
        load_pretrained: bool = True,
        features_state: dict[str, Any] | None = None,
    ) -> None:
        config = setup.config
        self.setup = setup
        torch.manual_seed(seed)
        pretrained = bool(config.pretrained) and load_pretrained
        model = create_model(
            setup.model_config,
            pretrained=pretrained,
            weights=config.weights if pretrained else None,
        )
        if features_state is not None:  # another run's features (finetune FROM a run)
            model.features.load_state_dict(features_state)
        # Untrained = the mean baseline.
        model.head.init_to_mean(output_means(setup.model_config.task, setup.y_train))
        self.model: GalaxyModel = model.to(setup.runtime.device)
        kind = torch.optim.Adam if config.optimizer == Optimizer.ADAM else torch.optim.AdamW
        self.optimizer = kind(_param_groups(self.model, config.lr_decay), lr=config.lr,
                              weight_decay=config.weight_decay)  # fmt: skip
        self.generator = torch.Generator().manual_seed(seed)
        self.progress = Progress()
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if config.ema else None
        self.steps = 0
        """Optimizer steps taken: the one step counter (the learning-rate schedule and the
        average's warm-up read it; weights/last.pt keeps it)."""
        self.saved_epoch = 0
        """The epoch that weights/last.pt holds (what a resume continues from)."""

    @property
    def averaged(self) -> GalaxyModel:
        """The weights that are validated, saved and used: the running average, if any."""
        return self.ema if self.ema is not None else self.model

    def set_mode(self, mode: Literal["train", "head", "eval"]) -> None:
        """The one place the model switches between training and evaluation: ``train`` (the
        whole network learns), ``head`` (the head alone: the features' batch-norm statistics
        stay as loaded) or ``eval``. The average is only ever evaluated."""
        self.model.train(mode != "eval")
        if mode == "head":
            self.model.features.eval()
        if self.ema is not None:
            self.ema.eval()

    def learner(self, inputs: Inputs) -> torch.nn.Module:
        """The module the optimizer trains: the head on features, else the whole model; under
        torchrun wrapped so that gradients are averaged over the ranks."""
        net: torch.nn.Module = self.model.head if inputs.features else self.model
        runtime = self.setup.runtime
        if not runtime.distributed:
            return net
        from torch.nn.parallel import DistributedDataParallel

        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids)

    @torch.no_grad()
    def update_average(self) -> None:
        """One step of the exponential moving average (its decay warms up over the first steps,
        so the average does not remember the initial weights for long)."""
        if self.ema is None:
            return
        decay = min(self.setup.config.ema, (1 + self.steps) / (10 + self.steps))
        for avg, new in zip(self.ema.state_dict().values(), self.model.state_dict().values(),
                            strict=True):  # fmt: skip
            if avg.is_floating_point():
                avg.lerp_(new, 1 - decay)
            else:
                avg.copy_(new)

    @torch.no_grad()
    def validate(self, x: Images, y: np.ndarray, *, features: bool = False) -> tuple[float, float]:
        """Loss (mean over labelled cells, as in training) and the task's metric on held-out
        images (the tree's: Kaggle RMSE), or on their ``features``.

        In a distributed run each rank scores its share of the tree's cells and the sums are
        combined, so every rank gets the same figures (and takes the same early-stopping
        decision); a metric over the whole set (ROC AUC) is computed by every rank on all of it.
        """
        config, runtime = self.setup.config, self.setup.runtime
        task = self.setup.model_config.task
        if not len(y):
            return math.nan, math.nan
        self.set_mode("eval")
        net = self.averaged.head if features else self.averaged
        share = (np.arange(runtime.rank, len(y), runtime.world_size) if task.is_tree
                 else np.arange(len(y)))  # fmt: skip
        errors, loss_sum, loss_cells = ErrorSum(), 0.0, 0
        preds = []
        step = eval_batch_size(self.setup, features)
        for b in range(0, len(share), step):
            idx = share[b : b + step]
            xb = to_float(batch_of(x, idx), runtime.device)
            yb = torch.from_numpy(y[idx]).to(runtime.device)
            with autocast(runtime.device, config.amp):
                pred = net(xb)
            pred = pred.float()
            cells = int((~torch.isnan(yb)).sum())
            loss_sum += float(losses.task_loss(task, config.loss, pred, yb)) * cells
            loss_cells += cells
            if task.is_tree:
                errors.add(pred.cpu().numpy(), y[idx])
            else:
                preds.append(pred.cpu().numpy())
        if not task.is_tree:
            loss = loss_sum / max(1, loss_cells)
            if task.metric == "loss":
                return loss, loss
            return loss, headline(task, task_scores(task, np.concatenate(preds), y))
        errors.sse, errors.count, loss_sum, loss_cells = all_reduce_sums(
            runtime, errors.sse, errors.count, loss_sum, loss_cells
        )
        if config.loss == Loss.RMSE:
            return errors.rmse, errors.rmse  # the RMSE of the whole set, not of batch RMSEs
        return loss_sum / max(1, loss_cells), errors.rmse

    def save(self, run_dir: Path, improved: bool) -> None:
        """weights/best.pt when ``improved``; weights/last.pt (with what resume needs) always;
        metrics.csv."""
        setup = self.setup
        common: dict[str, Any] = {
            "data_dir": setup.data_dir.resolve(),
            "val_ids": setup.val_ids,
            "progress": self.progress,
            "labels": None if setup.labels is None else setup.labels.resolve(),
        }
        weights = run_dir / "weights"
        if improved:
            save_checkpoint(weights / "best.pt", self.averaged, setup.config, **common)
        save_checkpoint(weights / "last.pt", self.averaged, setup.config, **common,
                        **self._training_state())  # fmt: skip
        self.saved_epoch = self.progress.epoch
        write_metrics(run_dir, self.progress.metrics)

    def _training_state(self) -> dict[str, Any]:
        """What continuing needs beyond the saved (averaged) weights."""
        state = {
            "optimizer_state": self.optimizer.state_dict(),
            "rng_state": self.generator.get_state(),
            "steps": self.steps,
        }
        if self.ema is not None:
            state["train_state"] = self.model.state_dict()  # the weights being trained
        return state

    def snapshot(self) -> dict[str, Any]:
        """Deep copies of the weights, optimizer, generator and progress (select-init keeps the
        best trial's: later trials must not overwrite it, the seed notebook's bug)."""
        return copy.deepcopy(
            {"model_state": self.averaged.state_dict(), "progress": self.progress,
             **self._training_state()}
        )  # fmt: skip

    def restore(self, state: dict[str, Any], progress: Progress) -> None:
        """Continue from a snapshot or a checkpoint's state."""
        self.model.load_state_dict(state.get("train_state", state["model_state"]))
        if self.ema is not None:
            self.ema.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        self.generator.set_state(state["rng_state"])
        self.steps = int(state.get("steps", 0))
        self.progress = copy.deepcopy(progress)
