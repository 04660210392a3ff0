"""Training throughput per model on this machine, and what channels-last and torch.compile change.

Usage:
    python benchmarks/model_speed.py [--models convnet,linnet,galaxynet,resnet18] [--steps 20]

Prints a Markdown table of training images/s (forward + backward + AdamW step at batch 64, with
our batch augmentation where the model's default recipe uses it, on random in-memory inputs of the
model's own input size), and for frozen backbones the epoch time with features computed once (our
cache) against running the backbone for every batch (what the seed notebook did). Not a test.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from galaxyzoo_cli.data.transforms import augment_batch  # noqa: E402
from galaxyzoo_cli.models import resolve_config  # noqa: E402
from galaxyzoo_cli.models.galaxy_model import create_model  # noqa: E402


def train_rate(
    name: str, steps: int, *, augment: bool, channels_last: bool = True, compile: bool = False
) -> float:
    """Training images/s; ``channels_last=False`` measures the plain NCHW layout instead of ours."""
    config = resolve_config(name, freeze=False)
    model = create_model(config)
    x = torch.rand(64, config.input.channels, config.input.size, config.input.size)
    if not channels_last:
        model = model.to(memory_format=torch.contiguous_format)

        def forward(images: torch.Tensor) -> torch.Tensor:  # embed() without the layout change
            return model.head(model.features((images - model.mean) / model.std))  # type: ignore[operator]

        step_model: Any = forward
    else:
        step_model = model
    step_model = torch.compile(step_model) if compile else step_model
    y = torch.rand(64, 37)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    warmup = 3
    for i in range(steps + warmup):
        if i == warmup:
            start = time.perf_counter()
        xb = augment_batch(x, gen) if augment else x
        loss = ((step_model(xb) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return 64 * steps / (time.perf_counter() - start)


def frozen_epochs(name: str, n_images: int, epochs: int) -> tuple[float, float]:
    """Seconds for ``epochs`` epochs of head training: (features cached once, backbone per step)."""
    config = resolve_config(name, freeze=True)
    model = create_model(config).eval()
    images = torch.rand(n_images, 3, config.input.size, config.input.size)
    y = torch.rand(n_images, 37)
    opt = torch.optim.AdamW(model.head.parameters(), lr=1e-3)

    def head_epoch(inputs: torch.Tensor, through_backbone: bool) -> None:
        for s in range(0, n_images, 64):
            xb = inputs[s : s + 64]
            if through_backbone:
                with torch.no_grad():
                    xb = model.embed(xb)
            loss = ((model.head(xb) - y[s : s + 64]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    start = time.perf_counter()
    with torch.no_grad():
        feats = torch.cat([model.embed(images[s : s + 256]) for s in range(0, n_images, 256)])
    for _ in range(epochs):
        head_epoch(feats, through_backbone=False)
    cached = time.perf_counter() - start
    start = time.perf_counter()
    head_epoch(images, through_backbone=True)
    per_batch = (time.perf_counter() - start) * epochs
    return cached, per_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="convnet,linnet,galaxynet")
    parser.add_argument("--frozen", default="resnet18")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--frozen-images", type=int, default=512)
    parser.add_argument("--frozen-epochs", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| model | augment | NCHW | channels-last (ours) | channels-last + torch.compile |")
    print("|---|---|---|---|---|")
    for name in filter(None, args.models.split(",")):
        augment = name != "linnet"
        plain = train_rate(name, args.steps, augment=augment, channels_last=False)
        cl = train_rate(name, args.steps, augment=augment)
        try:
            comp = f"{train_rate(name, args.steps, augment=augment, compile=True):,.0f}/s"
        except Exception as e:  # compile needs a C++ toolchain; report instead of failing
            comp = f"failed ({type(e).__name__})"
        print(f"| {name} | {augment} | {plain:,.0f}/s | {cl:,.0f}/s | {comp} |", flush=True)
    print()
    print("| frozen backbone | images | epochs | features cached once | backbone every batch |")
    print("|---|---|---|---|---|")
    for name in filter(None, args.frozen.split(",")):
        cached, per_batch = frozen_epochs(name, args.frozen_images, args.frozen_epochs)
        print(
            f"| {name} | {args.frozen_images} | {args.frozen_epochs} | {cached:.1f} s | "
            f"{per_batch:.1f} s ({per_batch / cached:.1f}× slower) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
