"""LoRA on a frozen prior (the baseline users pick today instead of an adapter; peft does the layers).

    video-adapter train --data data/robot/train --init checkpoints/prior --lora-rank 16 --steps 300

LoRA (Hu et al. 2021) adds a trainable low-rank update B A (B zero at the start) to each targeted linear layer of
the frozen network: W x + (alpha / rank) B A x. The training loop trains only those matrices; the run's model
directory holds the update merged into W, an ordinary checkpoint that samples, evaluates and composes like any other.
"""

from __future__ import annotations

import copy
import re

from torch import nn

# The attention projections, as diffusers' LoRA training scripts target to_q/to_k/to_v/to_out in every attention.
ATTENTION_PROJECTIONS = r".*\.(spatial|cross|temporal)\.(q|kv|out)"


def add_lora(model: nn.Module, rank: int, target: str = ATTENTION_PROJECTIONS) -> nn.Module:
    """Injects rank-`rank` LoRA layers (alpha = rank, so the update's scale is 1) into the modules whose full name
    matches the regex `target`, in place; every other parameter is frozen. The output is unchanged until trained."""
    from peft import LoraConfig, inject_adapter_in_model

    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, not {rank}")
    if not any(re.fullmatch(target, name) for name, _ in model.named_modules()):
        raise ValueError(f"no module of the model matches the LoRA target {target!r}")
    return inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=target), model)


def is_lora(model: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


def merged(model: nn.Module) -> nn.Module:
    """A copy of `model` with every LoRA update folded into its base weight and the LoRA layers removed: the
    network's own structure and state-dict keys again, computing what the LoRA model computes."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    plain = copy.deepcopy(model)
    for name, module in list(plain.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(plain.get_submodule(parent_name), child, module.get_base_layer())
    return plain.requires_grad_(False)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]

