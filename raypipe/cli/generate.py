"""``raypipe generate``: synthetic game telemetry, generated on Ray, one task per shard."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from raypipe.cli.consoles import console
from raypipe.cli.options import AddressOption, InlineOption, open_backend

__all__ = ["generate", "register"]


def generate(
    out: Annotated[str, typer.Option("--out", help="Base URL; one dataset per table under it.")],
    players: Annotated[int, typer.Option("--players", help="Number of players.")] = 10_000,
    days: Annotated[int, typer.Option("--days", help="Days of history before the cutoff.")] = 45,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same data.")] = 0,
    cutoff: Annotated[
        Optional[str],  # noqa: UP045 - typer needs Optional
        typer.Option("--cutoff", help="Churn cutoff date, YYYY-MM-DD (default 2026-01-01)."),
    ] = None,
    shard_players: Annotated[
        int, typer.Option("--shard-players", help="Players per task (part of the data's identity).")
    ] = 10_000,
    include_future_days: Annotated[
        int, typer.Option("--include-future-days", help="Days after the cutoff kept in events.")
    ] = 0,
    address: AddressOption = None,
    inline: InlineOption = False,
) -> None:
    """Generate players, events, churn labels and true churn probabilities into OUT."""
    from pydantic import ValidationError

    from raypipe.errors import SpecError
    from raypipe.synth.generate import run_generate
    from raypipe.synth.stage import GameTelemetryOptions

    values: dict[str, object] = {
        "players": players,
        "days": days,
        "seed": seed,
        "shard_players": shard_players,
        "include_future_days": include_future_days,
    }
    if cutoff is not None:
        values["cutoff"] = cutoff
    try:
        options = GameTelemetryOptions.model_validate(values)
    except ValidationError as exc:
        problems = [
            f"`--{'-'.join(str(p) for p in error['loc']).replace('_', '-')}`: {error['msg']}"
            for error in exc.errors()
        ]
        raise SpecError(problems, source="raypipe generate") from exc
    from raypipe.cli.boundary import require_writable

    require_writable(out, "--out")
    config = options.to_config()
    from raypipe.io.fs import join_url
    from raypipe.io.lease import ensure_writable_dataset
    from raypipe.synth.generate import TABLES

    for name in TABLES:  # before Ray starts: never mix into a user's folder
        ensure_writable_dataset(join_url(out, name))
    with open_backend(address, inline=inline) as backend:
        started = time.perf_counter()
        manifests = run_generate(config, out, backend)
        seconds = time.perf_counter() - started
    for name, manifest in manifests.items():
        console.print(
            f"[green]committed[/] `{name}`: {manifest.rows:,} rows, {len(manifest.files)} file(s), "
            f"version {manifest.version[:12]}",
            highlight=False,
        )
    console.print(
        f"{config.players:,} players in {config.shards} shard(s), "
        f"{manifests['events'].rows:,} events in {seconds:.1f} s (Ray worker start-up included)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``generate`` to the ``raypipe`` command."""
    app.command("generate")(generate)
