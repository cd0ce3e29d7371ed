"""Privacy for federated runs: client-level DP with an RDP accountant, SecAgg+ between parties."""

from __future__ import annotations

from raypipe.federated.privacy.accountant import RdpAccountant, rdp_sampled_gaussian
from raypipe.federated.privacy.dp import DPFixedClipping, clip_updates
from raypipe.federated.privacy.secagg import SecAggClient, SecAggConfig, dequantize, quantize
from raypipe.federated.privacy.secagg_server import SecAggResult, SecAggServer, secure_sum

__all__ = [
    "DPFixedClipping",
    "RdpAccountant",
    "SecAggClient",
    "SecAggConfig",
    "SecAggResult",
    "SecAggServer",
    "clip_updates",
    "dequantize",
    "quantize",
    "rdp_sampled_gaussian",
    "secure_sum",
]
