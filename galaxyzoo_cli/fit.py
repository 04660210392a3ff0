"""The training loop and what it runs on: :func:`prepare` resolves a run's settings and data
once, :class:`Fit` trains a model through them.

:meth:`Fit.run` reads top to bottom: shuffle; per batch the learning rate, the batch, forward,
loss, backward and the optimizer step; then the validation pass, early stopping and the checkpoint
writes. Images come from the uint8 cache (:mod:`galaxyzoo_cli.cache`) and are augmented as
tensors. With a frozen backbone and no augmentation each image's features are computed once and
only the head trains. Under torchrun only the main process writes files.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaxyzoo_cli import losses, transforms
from galaxyzoo_cli.cache import Rows, load_split
from galaxyzoo_cli.data import Skipped, load_catalogue, split_ids
from galaxyzoo_cli.device import Runtime, autocast, seed_everything, setup_runtime, to_float
from galaxyzoo_cli.errors import BadInputError, GalaxyZooError, Interrupted, JobFailedError
from galaxyzoo_cli.images import batch_for
from galaxyzoo_cli.metrics import ErrorSum
from galaxyzoo_cli.models import ModelConfig, get_spec, resolve_config
from galaxyzoo_cli.models.network import GalaxyModel, create_model
from galaxyzoo_cli.progress import SILENT, Reporter
from galaxyzoo_cli.runs import Progress, save_checkpoint, write_metrics
from galaxyzoo_cli.settings import Loss, Monitor, Optimizer, Schedule, TrainConfig
from galaxyzoo_cli.signals import how_stopped, stop_on_signals
from galaxyzoo_cli.tasks import headline, output_means, task_scores
from galaxyzoo_cli.tracking import TensorBoard, check_available

_ESTIMATE_AFTER = 10
"""Batches after which training says how long an epoch will take."""

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
    features: tuple[torch.Tensor, torch.Tensor] | None = None
    """Frozen-backbone features of (training, validation) images, once computed."""
    labels: Path | None = None
    """The user's labels file (``finetune``); None: the Kaggle labels of ``data_dir``."""


def prepare(
    config: TrainConfig,
    data_dir: Path,
    reporter: Reporter,
    *,
    val_ids: np.ndarray | None = None,
    model_config: ModelConfig | None = None,
) -> tuple[Setup, Reporter]:
    """Choose the device (and rank), seed, resolve the settings, split and decode the data.

    ``val_ids`` and ``model_config`` are given when continuing a run. Returns the setup and the
    reporter to use from here on (silent on every rank but the main one).
    """
    config.check()
    check_available(config.log)
    runtime = setup_runtime(config.device, reporter)
    reporter = reporter if runtime.is_main else SILENT
    seed_everything(config.seed)
    spec = get_spec(config.model)
    pretrained = config.weights is not None or (
        spec.pretrained if config.pretrained is None else config.pretrained
    )
    if model_config is None:
        # Freezing follows the weights actually loaded: frozen random features never learn.
        freeze = pretrained if config.freeze is None else config.freeze
        if freeze and not pretrained:
            raise BadInputError(
                f"--freeze without pretrained weights: {spec.name}'s features would stay random "
                "and only the head would learn. Drop --freeze to train the whole network, or "
                "load pretrained weights (--pretrained, or --weights FILE)."
            )
        model_config = resolve_config(
            config.model,
            head=config.head,
            channels=config.channels,
            image_size=config.image_size,
            crop=config.crop,
            freeze=freeze,
        )
    config = config.replace(
        model=model_config.name,
        pretrained=pretrained,
        augment=(not model_config.freeze) if config.augment is None else config.augment,
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


def _take(x: Images, idx: np.ndarray) -> np.ndarray | torch.Tensor:
    """Rows ``idx`` of cached images, an array or a (GPU) tensor."""
    if isinstance(x, Rows):
        return x[idx]
    if isinstance(x, np.ndarray):
        return x[idx]
    return x[torch.from_numpy(idx).to(x.device)]


def _eval_batch(setup: Setup) -> int:
    """Images per validation batch: twice the training batch (a forward without gradients keeps
    far fewer activations than a training step, so validation never sets the run's peak memory;
    512 images at 64 px made a 128-px convnext_nano run peak 20% higher), at most 512 at 64 px
    and fewer for larger inputs; features: 512."""
    if setup.features is not None:
        return 512
    return min(batch_for(setup.model_config.input.size, 512), 2 * setup.config.batch_size)


def _lr_factor(step: int, warmup: int, total: int, schedule: Schedule) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 (or constant)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == Schedule.CONSTANT:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


def _all_reduce_sums(runtime: Runtime, *values: float) -> list[Any]:
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
# The loop
# ---------------------------------------------------------------------------------------------


class Fit:
    """One model in training: its optimizer, random generator, progress and (with ``--ema``) the
    running average of its weights, which is what gets validated and saved.

    ``train``, ``resume`` and ``select_init`` all train through :meth:`run`.
    """

    def __init__(
        self,
        setup: Setup,
        seed: int,
        *,
        load_pretrained: bool = True,
        features_state: dict[str, Any] | None = None,
    ) -> None:
        c = setup.config
        self.setup = setup
        torch.manual_seed(seed)
        pretrained = bool(c.pretrained) and load_pretrained
        model = create_model(
            setup.model_config, pretrained=pretrained, weights=c.weights if pretrained else None
        )
        if features_state is not None:  # another run's features (finetune FROM a run)
            model.features.load_state_dict(features_state)
        # Untrained = the mean baseline.
        model.head.init_to_mean(output_means(setup.model_config.task, setup.y_train))
        self.model: GalaxyModel = model.to(setup.runtime.device)
        kind = torch.optim.Adam if c.optimizer == Optimizer.ADAM else torch.optim.AdamW
        self.optimizer = kind(_param_groups(self.model, c.lr_decay), lr=c.lr,
                              weight_decay=c.weight_decay)  # fmt: skip
        self.generator = torch.Generator().manual_seed(seed)
        self.progress = Progress()
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if c.ema else None
        self.steps = 0
        self.saved_epoch = 0
        """The epoch that weights/last.pt holds (what a resume continues from)."""

    @property
    def averaged(self) -> GalaxyModel:
        """The weights that are validated, saved and used: the running average, if any."""
        return self.ema if self.ema is not None else self.model

    @torch.no_grad()
    def _update_average(self) -> None:
        """One step of the exponential moving average (its decay warms up over the first steps,
        so the average does not remember the initial weights for long)."""
        self.steps += 1
        if self.ema is None:
            return
        decay = min(self.setup.config.ema, (1 + self.steps) / (10 + self.steps))
        for avg, new in zip(self.ema.state_dict().values(), self.model.state_dict().values(),
                            strict=True):  # fmt: skip
            if avg.is_floating_point():
                avg.lerp_(new, 1 - decay)
            else:
                avg.copy_(new)

    @stop_on_signals()
    def run(
        self,
        epochs: int,
        run_dir: Path | None,
        reporter: Reporter,
        early_stopping: bool = True,
        tracker: TensorBoard | None = None,
    ) -> bool:
        """Train from the epoch after ``progress.epoch`` up to ``epochs``; True if it stopped
        early. Writes metrics.csv, weights/best.pt (on improvement) and weights/last.pt (every
        epoch) into ``run_dir`` when given and this is the main process.

        Ctrl-C, SIGTERM and SIGUSR1 (a batch scheduler's stop and time-limit warning) end it
        with :class:`Interrupted` (exit 130, 143, 138) naming the checkpoint kept and the resume
        command; so does a failed checkpoint write (a full disk), with its own error."""
        s, c, rt, p = self.setup, self.setup.config, self.setup.runtime, self.progress
        objective = s.model_config.task
        x_train, x_val, net = self._inputs(reporter)
        n_train = len(s.y_train)
        n_epoch = max(n_train, c.epoch_images or 0)  # a small set is repeated up to this
        per_rank = max(1, c.batch_size // rt.world_size)
        steps_per_epoch = max(1, math.ceil(n_epoch / (per_rank * rt.world_size)))
        warmup = int(c.warmup_epochs * steps_per_epoch)
        per_epoch = n_epoch // rt.world_size * rt.world_size  # equal shares: ranks in lockstep
        first_epoch = p.epoch + 1
        head_epochs = c.head_epochs
        try:
            for epoch in range(first_epoch, epochs + 1):
                start = time.perf_counter()
                # Phase: the head alone for the first head_epochs (features frozen), then all of
                # it; each phase has its own warm-up and cosine decay.
                head_only = epoch <= head_epochs
                phase_start, phase_epochs = (0, head_epochs) if head_only else (head_epochs, epochs)
                total_steps = (phase_epochs - phase_start) * steps_per_epoch
                if head_epochs and not self.model.config.freeze:
                    self.model.features.requires_grad_(not head_only)
                    if epoch == head_epochs + 1:
                        p.bad_epochs = 0  # patience counts in the second phase
                # Shuffle (the same permutation on every rank), then take this rank's share.
                perm = self._permutation(n_train, n_epoch)[:per_epoch]
                perm = perm[rt.rank :: rt.world_size]
                net.train()
                if head_only:
                    self.model.features.eval()  # batch-norm statistics stay as loaded
                loss_sum, n_batches = torch.zeros((), device=rt.device), 0
                with reporter.task(f"Epoch {epoch}/{epochs}", len(perm)) as task:
                    for b in range(0, len(perm), per_rank):
                        idx = np.sort(perm[b : b + per_rank])  # sorted: faster cache reads
                        # Learning rate of this step: warm-up, then cosine decay.
                        step = (epoch - 1 - phase_start) * steps_per_epoch + b // per_rank
                        lr = c.lr * _lr_factor(step, warmup, total_steps, c.schedule)
                        for group in self.optimizer.param_groups:  # layer-wise scales
                            group["lr"] = lr * group.get("lr_scale", 1.0)
                        # Batch: uint8 → [0, 1] floats on the device, augmented as a tensor.
                        xb = to_float(_take(x_train, idx), rt.device)
                        yb = torch.from_numpy(s.y_train[idx]).to(rt.device, non_blocking=True)
                        if c.augment and s.features is None:
                            xb = transforms.augment_batch(xb, self.generator)
                        # Forward, loss over the labelled cells, backward, step.
                        with autocast(rt.device, c.amp):
                            pred = net(xb)
                        loss = losses.task_loss(objective, c.loss, pred.float(), yb)
                        self.optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        self.optimizer.step()
                        self._update_average()
                        loss_sum += loss.detach()
                        n_batches += 1
                        task.advance(len(idx))
                        if epoch == first_epoch and n_batches == _ESTIMATE_AFTER:
                            self._estimate(start, steps_per_epoch, epochs - epoch + 1, reporter)
                        # Stop a diverged epoch early (alone: distributed ranks step together).
                        if not rt.distributed and n_batches % 50 == 0:
                            if not torch.isfinite(loss_sum):
                                break
                total, batches = _all_reduce_sums(rt, float(loss_sum), float(n_batches))
                train_loss = total / max(1.0, batches)
                if not math.isfinite(train_loss):
                    raise JobFailedError(
                        f"training diverged in epoch {epoch} (loss {train_loss}); the last good "
                        f"checkpoint is kept. Lower --lr (now {c.lr:g}) or try --loss mse."
                    )
                # Validate: one global loss and the task's metric (the tree's: the Kaggle RMSE
                # over all labelled cells).
                val_loss, val_metric = self.validate(x_val, s.y_val)
                seconds = time.perf_counter() - start
                p.epoch = epoch
                p.train_seconds += seconds
                if s.features is None:  # images through the network (features: counted once)
                    p.images_seen += n_epoch
                p.metrics.append(
                    {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                     f"val_{objective.metric}": val_metric, "lr": lr, "seconds": seconds}
                )  # fmt: skip
                improved = self._improved(val_loss, val_metric)
                if improved:
                    p.best_val_loss, p.best_val_rmse, p.best_epoch = val_loss, val_metric, epoch
                p.bad_epochs = 0 if improved else p.bad_epochs + 1
                reporter.log(
                    f"epoch {epoch:3d}/{epochs}  train_loss {train_loss:.5f}  "
                    f"val_loss {val_loss:.5f}  val_{objective.metric} {val_metric:.5f}  "
                    f"{seconds:5.1f}s" + ("  *" if improved else "")
                )
                # Checkpoints: best on improvement, last every epoch (what --resume continues).
                if run_dir is not None and rt.is_main:
                    try:
                        self.save(run_dir, improved)
                    except GalaxyZooError as e:
                        e.args = (f"{e} {self._kept(run_dir, epochs)}",)
                        raise
                if tracker is not None:
                    tracker.epoch(p.metrics[-1])
                if early_stopping and c.patience and p.bad_epochs >= c.patience:
                    reporter.log(
                        f"Early stop: no improvement for {c.patience} "
                        f"epoch{'s' if c.patience != 1 else ''}."
                    )
                    return True
        except KeyboardInterrupt as e:
            how, code = how_stopped(e)
            if run_dir is None:
                raise Interrupted(f"{how} in epoch {p.epoch + 1}.", code) from None
            kept = self._kept(run_dir, epochs)
            raise Interrupted(f"{how} after epoch {self.saved_epoch}; {kept}", code) from None
        return False

    def _permutation(self, n_train: int, n_epoch: int) -> np.ndarray:
        """One epoch's order of the training rows: a shuffle, repeated (each time another one)
        until it holds ``n_epoch`` rows."""
        perms = [torch.randperm(n_train, generator=self.generator).numpy()
                 for _ in range(math.ceil(n_epoch / max(1, n_train)))]  # fmt: skip
        return np.concatenate(perms)[:n_epoch]

    def _improved(self, val_loss: float, val_metric: float) -> bool:
        """Whether this epoch beats the best so far: by the validation loss for the tree (and a
        mix of targets), by the task's metric otherwise (ties: by the loss)."""
        s, p = self.setup, self.progress
        task = s.model_config.task
        if not len(s.y_val):
            return True
        by_loss = val_loss < p.best_val_loss
        by_metric = s.config.monitor == Monitor.METRIC and task.metric != "loss"
        if task.is_tree or not by_metric or math.isnan(val_metric):
            return by_loss
        if math.isnan(p.best_val_rmse):
            return True
        gain = val_metric - p.best_val_rmse
        if not task.higher_is_better:
            gain = -gain
        return gain > 0 or (gain == 0 and by_loss)

    def _kept(self, run_dir: Path, epochs: int) -> str:
        """What a stopped run keeps, and how to continue it."""
        if not self.saved_epoch:
            return f"no epoch of {run_dir} was saved yet, so there is nothing to resume."
        if self.setup.labels is not None:  # finetune: not resumed, its best epoch is kept
            return f"{run_dir}/weights/best.pt holds its best epoch so far."
        return (
            f"{run_dir}/weights/last.pt holds epoch {self.saved_epoch}. "
            f"Continue with: galaxyzoo train --resume {run_dir} --epochs {epochs}"
        )

    @staticmethod
    def _estimate(start: float, steps: int, epochs: int, reporter: Reporter) -> None:
        """The cost, said after the first batches: an epoch's training steps, and the run's."""
        if steps <= 2 * _ESTIMATE_AFTER:
            return  # a short epoch says it itself
        per_epoch = (time.perf_counter() - start) / _ESTIMATE_AFTER * steps
        reporter.log(
            f"About {per_epoch:.0f} s per epoch ({per_epoch * epochs / 60:.1f} min for "
            f"{epochs} epoch{'s' if epochs != 1 else ''}, without validation)."
        )

    @torch.no_grad()
    def validate(self, x: Images, y: np.ndarray) -> tuple[float, float]:
        """Loss (mean over labelled cells, as in training) and the task's metric on held-out
        images (the tree's: Kaggle RMSE).

        In a distributed run each rank scores its share of the tree's cells and the sums are
        combined, so every rank gets the same figures (and takes the same early-stopping
        decision); a metric over the whole set (ROC AUC) is computed by every rank on all of it.
        """
        c, rt = self.setup.config, self.setup.runtime
        task = self.setup.model_config.task
        if not len(y):
            return math.nan, math.nan
        net = self.averaged.head if self.setup.features is not None else self.averaged
        net.eval()
        share = np.arange(rt.rank, len(y), rt.world_size) if task.is_tree else np.arange(len(y))
        errors, loss_sum, loss_cells = ErrorSum(), 0.0, 0
        preds = []
        step = _eval_batch(self.setup)
        for b in range(0, len(share), step):
            idx = share[b : b + step]
            xb = to_float(_take(x, idx), rt.device)
            yb = torch.from_numpy(y[idx]).to(rt.device)
            with autocast(rt.device, c.amp):
                pred = net(xb)
            pred = pred.float()
            cells = int((~torch.isnan(yb)).sum())
            loss_sum += float(losses.task_loss(task, c.loss, pred, yb)) * cells
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
        errors.sse, errors.count, loss_sum, loss_cells = _all_reduce_sums(
            rt, errors.sse, errors.count, loss_sum, loss_cells
        )
        if c.loss == Loss.RMSE:
            return errors.rmse, errors.rmse  # the RMSE of the whole set, not of batch RMSEs
        return loss_sum / max(1, loss_cells), errors.rmse

    def save(self, run_dir: Path, improved: bool) -> None:
        """weights/best.pt when ``improved``; weights/last.pt (with what resume needs) always."""
        s = self.setup
        common: dict[str, Any] = {
            "data_dir": s.data_dir.resolve(),
            "val_ids": s.val_ids,
            "progress": self.progress,
            "labels": None if s.labels is None else s.labels.resolve(),
        }
        if improved:
            save_checkpoint(run_dir / "weights" / "best.pt", self.averaged, s.config, **common)
        save_checkpoint(run_dir / "weights" / "last.pt", self.averaged, s.config, **common,
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

    def _inputs(self, reporter: Reporter) -> tuple[Images, Images, torch.nn.Module]:
        """What the loop trains on: (training inputs, validation inputs, the module that learns).

        Images and the whole model; or, for a frozen backbone without augmentation, features
        computed once (shared by every trial of select-init) and the head. Under torchrun the
        module is wrapped so that gradients are averaged over the ranks.
        """
        s = self.setup
        x_train: Images
        x_val: Images
        if self.model.config.freeze and not s.config.augment:
            if s.features is None:
                s.features = self._compute_features(reporter)
            x_train, x_val = s.features
            net: torch.nn.Module = self.model.head
        else:
            x_train, x_val, net = s.x_train, s.x_val, self.model
        return x_train, x_val, self._distributed(net)

    def _distributed(self, net: torch.nn.Module) -> torch.nn.Module:
        rt = self.setup.runtime
        if not rt.distributed:
            return net
        from torch.nn.parallel import DistributedDataParallel

        ids = [rt.device.index] if rt.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids)

    @torch.no_grad()
    def _compute_features(self, reporter: Reporter) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.setup
        start = time.perf_counter()
        self.model.eval()
        out = []
        for name, x in (("training", s.x_train), ("validation", s.x_val)):
            feats = [torch.empty(0, int(self.model.features.num_features))]  # type: ignore[arg-type]
            step = _eval_batch(s)
            with reporter.task(f"Features ({name})", len(x)) as task:
                for b in range(0, len(x), step):
                    index = np.arange(b, min(b + step, len(x)))
                    batch = to_float(_take(x, index), s.runtime.device)
                    with autocast(s.runtime.device, s.config.amp):
                        feats.append(self.model.embed(batch).float().cpu())
                    task.advance(len(batch))
            out.append(torch.cat(feats))
        seconds, n_images = time.perf_counter() - start, len(s.y_train) + len(s.y_val)
        self.progress.images_seen += n_images
        self.progress.train_seconds += seconds
        reporter.log(
            f"Frozen features of {n_images} images computed once in {seconds:.1f} s; "
            "training the head on them."
        )
        return out[0], out[1]
