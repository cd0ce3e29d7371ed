"""Data validation: mergeable column profiles, quality rules with policies, rule inference."""

from __future__ import annotations

from raypipe.validation.checking import CheckReport, RuleResult, check_table, run_check
from raypipe.validation.profiling import DatasetProfile, read_profile_table, run_profile
from raypipe.validation.rule_inference import infer_rules
from raypipe.validation.rules import RuleSetSpec, read_rules, rules_to_yaml
from raypipe.validation.stats import ColumnProfile, merge_profiles, profile_column, profile_table

__all__ = [
    "CheckReport",
    "ColumnProfile",
    "DatasetProfile",
    "RuleResult",
    "RuleSetSpec",
    "check_table",
    "infer_rules",
    "merge_profiles",
    "profile_column",
    "profile_table",
    "read_profile_table",
    "read_rules",
    "rules_to_yaml",
    "run_check",
    "run_profile",
]
