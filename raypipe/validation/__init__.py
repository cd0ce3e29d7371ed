"""Data validation: mergeable column profiles, quality rules with policies, drift tests."""

from __future__ import annotations

from raypipe.validation.profile import ColumnProfile, merge_profiles, profile_column, profile_table
from raypipe.validation.profiling import DatasetProfile, read_profile_table, run_profile

__all__ = [
    "ColumnProfile",
    "DatasetProfile",
    "merge_profiles",
    "profile_column",
    "profile_table",
    "read_profile_table",
    "run_profile",
]
