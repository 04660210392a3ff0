"""The networks: :class:`GalaxyModel` (normalisation → features → head) and
:func:`create_model`, which builds one from its :class:`~galaxyzoo_cli.models.ModelConfig`."""

from __future__ import annotations

import torch
from torch import nn

from galaxyzoo_cli.models import ModelConfig, get_spec
from galaxyzoo_cli.models.heads import SigmoidHead, TaskHead, TreeHead, make_head


class GalaxyModel(nn.Module):
    """Normalisation → feature extractor → head: images in [0, 1] to 37 outputs in [0, 1].

    The model owns its normalisation, so no caller can forget it or use the wrong constants.
    """

    def __init__(self, config: ModelConfig, features: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.features = features
        width = int(features.num_features)  # type: ignore[arg-type]
        self.head: SigmoidHead | TreeHead | TaskHead = (
            make_head(config.head, width, config.activation)
            if config.task.is_tree
            else TaskHead(width, config.task)
        )
        spec = config.input
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)
        if config.freeze:
            self.features.requires_grad_(False)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Features (B, F) of images (B, C, S, S) with values in [0, 1]."""
        x = (images - self.mean) / self.std  # type: ignore[operator]
        return self.features(x.contiguous(memory_format=torch.channels_last))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images))

    def train(self, mode: bool = True) -> GalaxyModel:
        super().train(mode)
        if self.config.freeze:
            self.features.eval()  # frozen features: batch-norm statistics stay as loaded
        return self


def fuse_for_inference(model: GalaxyModel) -> GalaxyModel:
    """``model`` in eval mode, each batch norm that directly follows a convolution folded into it
    and the ReLU after it made in place: the same outputs up to float rounding, for about a fifth
    less CPU time per image (``benchmarks/full_scale.py``'s predict). For prediction only: the
    model can no longer be trained."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for i, (a, b) in enumerate(zip(names, names[1:], strict=False)):
            conv, norm = seq._modules[a], seq._modules[b]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(norm, nn.BatchNorm2d)
                and norm.running_mean is not None
            ):
                seq._modules[a] = fuse_conv_bn_eval(conv, norm)
                seq._modules[b] = nn.Identity()
                after = seq._modules.get(names[i + 2]) if i + 2 < len(names) else None
                if isinstance(after, nn.ReLU):  # its input is the fresh output of the conv
                    after.inplace = True
    return model.to(memory_format=torch.channels_last)


def create_model(
    config: ModelConfig, *, pretrained: bool = False, weights: str | None = None
) -> GalaxyModel:
    """Build the model of ``config``; a backbone gets pretrained or local weights if asked (a
    model without them refuses: :meth:`~galaxyzoo_cli.models.ModelSpec.check_weights`)."""
    features = get_spec(config.name).build(config.input, pretrained=pretrained, weights=weights)
    # Channels-last convolutions trained 20-27% faster on the CPU (benchmarks/model_speed.py);
    # embed() hands the features the same layout.
    return GalaxyModel(config, features).to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
