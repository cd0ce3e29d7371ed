"""The ``raypipe`` command line: typer commands, each a thin call into the library."""
