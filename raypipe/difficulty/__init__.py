"""Dynamic difficulty adjustment: policies and their evaluation in the simulator.

The simulator with its hidden truth is :mod:`raypipe.synth.difficulty`; the policies (fixed
settings, a target-fail-rate controller, the oracle) are :mod:`raypipe.difficulty.policy`; the
``difficulty.simulate`` stage (:mod:`raypipe.difficulty.stage`) runs them over seeds and player
shards as Ray tasks and reports retention and spend with confidence intervals.
"""

from __future__ import annotations

from raypipe.difficulty.policy import FailRateController, FixedSetting, Oracle, make_policy

__all__ = ["FailRateController", "FixedSetting", "Oracle", "make_policy"]
