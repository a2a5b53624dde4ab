import importlib.util
import os
from pathlib import Path

import pytest
import torch

# Nothing in the test suite may reach the network; transformers and the hub honour this.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


@pytest.fixture
def tiny_cfg():
    from video_adapter.models.unet import UNetConfig

    return UNetConfig(frames=4, height=8, width=8, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                      attention_resolutions=(4,), head_dim=8, emb_dim=32, text_dim=16, edge_cond=True)


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Random weights everywhere, zero-initialised output layers included, so every input path is visible."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model


def model_inputs(cfg, b: int = 3, seed: int = 0, logsnr_range: float = 5.0):
    """Noisy video, per-sample log-SNR and every condition, for a model built from `cfg`."""
    from video_adapter.maths.conditioning import Cond, sobel_x

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cfg.channels, cfg.frames, cfg.height, cfg.width, generator=g)
    video = torch.rand(b, cfg.channels, cfg.frames, cfg.height, cfg.width, generator=g) * 2 - 1
    cond = Cond.make(text=torch.randn(b, 5, cfg.text_dim, generator=g), first_frame=video[:, :, 0],
                     edges=sobel_x(video))
    return x, torch.linspace(-logsnr_range, logsnr_range, b), cond


def load_script(name: str):
    """A module of scripts/ (not a package), imported from its file."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
