"""The networks beside the trajectory denoiser: the value model that guides and ranks plans
(Diffuser's), and the MLP of behaviour cloning and of inverse dynamics (Ajay et al. 2023).
Each is saved in a run folder as ``NAME.safetensors`` beside ``NAME.json`` through the training
layer's side-network save/load (``value_model``, ``bc_policy``, ``inverse_dynamics``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...backbones import UNet1D, UNet1DConfig
from ...train.side import load_side_network, save_side_network
from .denoiser import backbone_config

VALUE_FILE, BC_FILE, INVERSE_FILE = "value_model", "bc_policy", "inverse_dynamics"


def _save(module: nn.Module, run_dir, name: str, info: dict) -> None:
    run_dir = Path(run_dir)
    save_side_network(module, run_dir / f"{name}.safetensors", run_dir / f"{name}.json", info)


def _load(run_dir, name: str) -> tuple[dict, dict] | None:
    run_dir = Path(run_dir)
    return load_side_network(run_dir / f"{name}.safetensors", run_dir / f"{name}.json")


# ---------------------------------------------------------------- value model


def returns_to_go(rewards, ends, discount: float) -> np.ndarray:
    """``G_t = r_t + discount * G_{t+1}``, restarted after every step marked in ``ends``
    (episode ends): Diffuser's value targets, the discounted return from each step on."""
    rewards = np.asarray(rewards, np.float64)
    ends = np.asarray(ends, bool)
    returns = np.zeros_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if ends[t]:
            running = 0.0
        running = rewards[t] + discount * running
        returns[t] = running
    return returns


class ValueModel(nn.Module):
    """``V(x, sigma) -> (B,)``: the temporal U-Net with one output channel, averaged over
    time, on the noisy trajectory scaled like EDM's input (``x / sqrt(sigma^2 + sigma_data^2)``)
    and conditioned on the schedule's ``c_noise``. It predicts the normalised return."""

    def __init__(self, backbone: UNet1D, schedule):
        super().__init__()
        if backbone.config.output_channels != 1:
            raise ValueError(f"a value model's U-Net needs out_channels=1, got {backbone.config.output_channels}")
        self.backbone, self.schedule = backbone, schedule

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        x_in = x.transpose(1, 2) / (sigma**2 + self.schedule.sigma_data**2).sqrt()[:, None, None]  # (B, D, H)
        return self.backbone(x_in, self.schedule.c_noise(sigma)).mean(dim=(1, 2))  # (B,)


def build_value_model(dim: int, horizon: int, schedule, *, preset: str = "small", seed: int = 0) -> ValueModel:
    """An untrained :class:`ValueModel` (a ``preset`` U-Net) whose weights come from ``seed`` only."""
    config = backbone_config(dim, horizon, preset, out_channels=1, embedding="fourier")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = UNet1D(config)
        # a regressor need not start at zero: a random read-out learns faster
        nn.init.xavier_uniform_(backbone.conv_out.weight)
    return ValueModel(backbone, schedule)


def save_value_model(value: ValueModel, run_dir, stats: dict) -> None:
    """``value_model.safetensors`` and ``value_model.json`` (its U-Net config and the return
    statistics ``{"mean", "std", "discount"}`` that undo the normalisation)."""
    _save(value.backbone, run_dir, VALUE_FILE, {"backbone": asdict(value.backbone.config), **stats})


def load_value_model(run_dir, schedule, device="cpu") -> tuple[ValueModel, dict] | None:
    """The run's value model and its return statistics, or None when it has none."""
    loaded = _load(run_dir, VALUE_FILE)
    if loaded is None:
        return None
    info, state = loaded
    backbone = UNet1D(UNet1DConfig(**info.pop("backbone")))
    backbone.load_state_dict(state)
    return ValueModel(backbone, schedule).to(device).eval().requires_grad_(False), info


# ---------------------------------------------------------------- behaviour cloning and inverse dynamics


class BCNet(nn.Module):
    """Behaviour cloning: an MLP from normalised inputs (observation, goal) to a normalised action."""

    def __init__(self, in_dim: int, act_dim: int, width: int = 256, depth: int = 2):
        super().__init__()
        layers, size = [], in_dim
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        self.net = nn.Sequential(*layers, nn.Linear(size, act_dim))
        self.in_dim, self.act_dim, self.width, self.depth = in_dim, act_dim, width, depth

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)



def build_mlp(in_dim: int, out_dim: int, *, width: int = 256, seed: int = 0) -> BCNet:
    """An untrained :class:`BCNet` whose weights come from ``seed`` only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BCNet(in_dim, out_dim, width)


def save_mlp(net: BCNet, run_dir, name: str, info: dict) -> None:
    """``NAME.safetensors`` and ``NAME.json`` (sizes and ``info``) of a :class:`BCNet`: the
    behaviour-cloning policy (``bc_policy``) or the inverse dynamics (``inverse_dynamics``)."""
    _save(net, run_dir, name, {"in_dim": net.in_dim, "act_dim": net.act_dim, "width": net.width,
                               "depth": net.depth, **info})


def load_mlp(run_dir, name: str) -> tuple[BCNet, dict] | None:
    """The :class:`BCNet` saved as ``name`` in a run folder and its info (None when absent)."""
    loaded = _load(run_dir, name)
    if loaded is None:
        return None
    info, state = loaded
    net = BCNet(info["in_dim"], info["act_dim"], info["width"], info["depth"])
    net.load_state_dict(state)
    return net.eval().requires_grad_(False), info


__all__ = ["BCNet", "BC_FILE", "INVERSE_FILE", "VALUE_FILE", "ValueModel", "build_mlp", "build_value_model",
           "load_mlp", "load_value_model", "returns_to_go", "save_mlp", "save_value_model"]
