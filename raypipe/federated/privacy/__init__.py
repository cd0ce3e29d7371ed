"""Privacy for federated runs: central DP with an RDP accountant, and simulated SecAgg+."""

from __future__ import annotations

from raypipe.federated.privacy.accountant import RdpAccountant, rdp_sampled_gaussian
from raypipe.federated.privacy.dp import DPFixedClipping, clip_updates
from raypipe.federated.privacy.secagg import (
    SecAggConfig,
    SecAggResult,
    dequantize,
    quantize,
    secure_sum,
)

__all__ = [
    "DPFixedClipping",
    "RdpAccountant",
    "SecAggConfig",
    "SecAggResult",
    "clip_updates",
    "dequantize",
    "quantize",
    "rdp_sampled_gaussian",
    "secure_sum",
]
