"""ResNet over a grid of patches, with an optional CRF on top (the NCRF model).

Built on torchvision's ResNet, whose layers, parameter names and initialisation (He fan-out for convolutions,
BatchNorm weight 1 and bias 0) are those of the original; differences: a single-logit ``fc``, adaptive global
average pooling (any crop size), and ``crf``.
"""

import torch
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from wsi.model.layers import CRF


class ResNetGrid(ResNet):
    """ResNet that scores every patch of a grid and optionally refines the scores with a :class:`CRF`.

    Parameters
    ----------
    block, layers : as torchvision's ``ResNet``.
    num_classes : int
        Outputs of ``fc``; 1 (a tumour logit) throughout NCRF.
    num_nodes : int
        Patches per grid, G (9 for 3×3).
    use_crf : bool
        Add the CRF layer ``crf`` (its ``W`` starts at zero).
    """

    def __init__(self, block, layers, num_classes=1, num_nodes=1, use_crf=True):
        super().__init__(block, layers, num_classes=num_classes)
        self.num_nodes = num_nodes
        self.crf = CRF(num_nodes) if use_crf else None

    @property
    def use_crf(self):
        return self.crf is not None

    def embed(self, patches):
        """Embeddings and logits of a batch of patches.

        ``patches`` ``[N, 3, C, C]`` → (embeddings ``[N, D]``, logits ``[N]``) with D = 512·expansion.
        """
        x = self.conv1(patches)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        feats = torch.flatten(self.avgpool(x), 1)
        logits = self.fc(feats)
        return feats, logits[:, 0]

    def grid_logits(self, feats, logits):
        """Apply the CRF (when present) to grids: ``[B, G, D]`` embeddings and ``[B, G]`` logits → ``[B, G]``."""
        if self.crf is None:
            return logits
        return self.crf(feats, logits)

    def forward(self, grids):
        """``grids`` ``[B, G, 3, C, C]`` → logits ``[B, G]``, also for B = 1 (the original returned ``[G]``)."""
        batch, nodes = grids.shape[:2]
        feats, logits = self.embed(grids.flatten(0, 1))
        return self.grid_logits(feats.reshape(batch, nodes, -1), logits.reshape(batch, nodes))


def resnet18(**kwargs):
    return ResNetGrid(BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs):
    return ResNetGrid(BasicBlock, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs):
    return ResNetGrid(Bottleneck, [3, 4, 6, 3], **kwargs)


def resnet101(**kwargs):
    return ResNetGrid(Bottleneck, [3, 4, 23, 3], **kwargs)


def resnet152(**kwargs):
    return ResNetGrid(Bottleneck, [3, 8, 36, 3], **kwargs)
