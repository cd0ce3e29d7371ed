"""``raypipe data``: quality rules over a dataset (``check``) and a dataset's kept ``versions``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from raypipe.cli.consoles import console
from raypipe.cli.options import AddressOption, InlineOption, open_backend

__all__ = ["register"]

group = typer.Typer(help="Data quality: rules, profiles, quarantine.", no_args_is_help=True)


@group.command("check")
def check(
    data: Annotated[
        str, typer.Option("--data", help="Dataset to check (committed, or plain Parquet).")
    ],
    rules: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional
        typer.Option("--rules", help="Rules YAML file."),
    ] = None,
    infer_from: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--infer-from", help="Also infer rules from this reference dataset."),
    ] = None,
    write_rules: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--write-rules", help="Write the rules used (inferred ones too) as YAML."),
    ] = None,
    quarantine: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--quarantine", help="Write rows broken by `quarantine` rules here..."),
    ] = None,
    clean: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--clean", help="...and the other rows here (both or neither)."),
    ] = None,
    json_path: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--json", help="Write the per-rule results as JSON."),
    ] = None,
    address: AddressOption = None,
    inline: InlineOption = False,
) -> None:
    """Check DATA against RULES; exit 3 when a rule with policy `fail` does not pass."""
    from raypipe.errors import DataError, SpecError
    from raypipe.io.lease import hold_dataset_leases
    from raypipe.io.sources import open_dataset
    from raypipe.validation.check_stage import describe_failures
    from raypipe.validation.checking import run_check
    from raypipe.validation.profiling import run_profile
    from raypipe.validation.rule_inference import infer_rules
    from raypipe.validation.rules import RuleSetSpec, read_rules, rules_to_yaml

    if rules is None and infer_from is None:
        raise SpecError(["give `--rules FILE`, `--infer-from URL`, or both"])
    if (quarantine is None) != (clean is None):
        raise SpecError(["`--quarantine` and `--clean` go together"])
    from raypipe.cli.boundary import require_exists, require_writable

    require_exists(data, "--data")
    outputs: dict[str, Path | str | None] = {
        "--write-rules": write_rules,
        "--json": json_path,
        "--quarantine": quarantine,
        "--clean": clean,
    }
    for option, target in outputs.items():
        if target is not None:
            require_writable(str(target), option)
    manifest = open_dataset(data)
    chosen = list(read_rules(rules).rules) if rules is not None else []
    datasets = [output for output in (clean, quarantine) if output is not None]
    # Before any work: never mix into a user's folder; one writer per output until the commit.
    with hold_dataset_leases(datasets), open_backend(address, inline=inline) as executor:
        if infer_from is not None:
            profile = run_profile("reference", infer_from, open_dataset(infer_from), executor)
            chosen += infer_rules(profile)
        rule_set = RuleSetSpec(rules=chosen)
        if write_rules is not None:
            write_rules.write_text(rules_to_yaml(rule_set.rules))
        report = run_check(
            data, manifest, rule_set, executor, data_url=clean, quarantine_url=quarantine
        )
    table = Table(title=f"rules on `{data}` ({report.rows:,} rows)")
    for header in ("rule", "check", "policy", "result", "failing", "detail"):
        table.add_column(header)
    for result in report.results:
        verdict = (
            "[green]pass[/]"
            if result.passed
            else ("[red]FAIL[/]" if result.policy == "fail" else f"[yellow]{result.policy}[/]")
        )
        table.add_row(
            result.rule,
            result.check,
            result.policy,
            verdict,
            str(result.failing),
            result.detail[:60],
        )
    console.print(table)
    if report.quarantined:
        console.print(f"quarantined {report.quarantined:,} row(s) to `{quarantine}`")
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=1, default=str))
        console.print(f"wrote `{json_path}`")
    if report.failed:
        raise DataError(
            f"{len(report.failed)} rule(s) with policy `fail` did not pass: "
            f"{describe_failures(report)}",
            hint="fix the data, or relax the rules (policy `warn` or `quarantine`)",
        )


@group.command("versions")
def versions(
    url: Annotated[str, typer.Argument(help="A dataset (or artifact) raypipe committed.")],
    storage_option: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer needs Optional
        typer.Option("--storage-option", help="fsspec option KEY=VALUE (repeatable)."),
    ] = None,
) -> None:
    """List the kept versions of URL, newest first: version, time, rows, files.

    Read one of them in a job with `inputs: {name: <stage>.<output>@<version>}`.
    """
    from raypipe.errors import DataError, DatasetNotCommittedError, SpecError
    from raypipe.io.manifest import list_versions

    options: dict[str, str] = {}
    for item in storage_option or []:
        key, sep, value = item.partition("=")
        if not (key and sep):
            raise SpecError([f"`--storage-option {item}`: expected KEY=VALUE"])
        options[key] = value
    try:
        kept = list_versions(url, options or None)
    except DatasetNotCommittedError:
        from raypipe.io.sources import open_dataset

        plain = open_dataset(url, options or None)  # raises its own error when not plain either
        raise DataError(
            f"`{url}` is plain Parquet ({len(plain.files)} file(s), {plain.rows:,} rows), not a "
            "dataset raypipe committed: it has no kept versions",
            hint="every raypipe command reads it as it is now; versions exist for raypipe outputs",
        ) from None
    table = Table(title=f"versions of `{url}` (newest first)")
    for header in ("version", "committed", "rows", "files", ""):
        table.add_column(header)
    for index, manifest in enumerate(kept):
        table.add_row(
            manifest.version[:12],
            manifest.created_at or "?",
            f"{manifest.rows:,}",
            str(len(manifest.files)),
            "current" if index == 0 else "",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``data`` group to the ``raypipe`` command."""
    app.add_typer(group, name="data")
