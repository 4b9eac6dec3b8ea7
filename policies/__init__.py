"""Policies and trainers of agentcomm (installed as ``agentcomm.policies``).

Pure-torch pieces are exported here; the RLlib algorithm lives in
:mod:`agentcomm.policies.dppo` so that importing this package never loads Ray.
"""

from __future__ import annotations

from .bc import BCResult, train_bc
from .checkpoint import load_policy, read_config, save_policy, shipped_policy_dir
from .diffusion import DiffusionConfig, DiffusionPolicy, DPPOPolicy, SampleOutput
from .networks import ResidualMLPDenoiser

__all__ = [
    "BCResult",
    "DPPOPolicy",
    "DiffusionConfig",
    "DiffusionPolicy",
    "ResidualMLPDenoiser",
    "SampleOutput",
    "load_policy",
    "read_config",
    "save_policy",
    "shipped_policy_dir",
    "train_bc",
]
