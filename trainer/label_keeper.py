"""Keeping the simulator's labels while refining: a frozen task model must read from R(x) what it
reads from x (the semantic consistency loss of CyCADA, Hoffman et al. 2018).

Self-regularisation keeps R near its input in pixels; it cannot tell a harmless change (a thicker
stroke) from one that changes the label (a 3 that became an 8). A small task model trained once on
the synthetic images and their annotations can: R is penalised when that model's output on R(x)
departs from its output on x. Every user has these annotations, so it needs no real labels.

The model is fit here with its own seed, apart from the one checkpoint selection scores label
consistency with, so that selection does not grade R on the very model R was trained to satisfy.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.evaluate import fit_task, target_array
from trainer.task_models import TaskBudget

if TYPE_CHECKING:
    from trainer.selection import LabeledSet

log = logging.getLogger(__name__)

KEEPER_BUDGET = TaskBudget(steps=200, batch_size=64, members=1)
SEED_OFFSET = 7919
"""Added to the run's seed for the keeper's task model: a different draw from the selector's."""


class LabelKeeper(nn.Module):
    """`loss(x, refined)`: how far a frozen task model's reading of R(x) is from its reading of x.

    x and refined are (B, C, H, W) in [-1, 1]. Classification: KL(p(x) || p(R(x))) in nats;
    regression: mean squared difference of the standardised predictions. Both are 0 at R = identity.
    """

    def __init__(self, net: nn.Module, kind: str) -> None:
        super().__init__()
        self.net = net.eval()
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)
        self.kind = kind

    def loss(self, x: Tensor, refined: Tensor) -> Tensor:
        with torch.no_grad():
            reading = self.net(x).float()  # (B, outputs)
        out = self.net(refined).float()
        if self.kind == "classification":
            return F.kl_div(
                out.log_softmax(dim=1), reading.log_softmax(dim=1), log_target=True, reduction="batchmean"
            )
        return F.mse_loss(out, reading)


def build_keeper(labels: LabeledSet | None, seed: int, device: torch.device) -> LabelKeeper | None:
    """A keeper fit on a selector's labeled synthetic set, or None without one."""
    if labels is None:
        return None
    targets = labels.targets
    y = target_array(list(labels.annotations), targets)
    task = fit_task(labels.images, y, targets, seed + SEED_OFFSET, KEEPER_BUDGET, "cpu")
    net = copy.deepcopy(task.members[0].net).to(device)
    log.info("label keeper: a %s model of %s", targets.kind, ", ".join(targets.fields))
    return LabelKeeper(net, targets.kind)
