"""What an installed raypipe weighs: disk per distribution, and which requirement pulls what.

Run with the environment's Python (``.venv/bin/python scripts/install_size.py``). It reads the
installed distributions' file lists (``importlib.metadata``), so it measures what pip installed,
not what a wheel index says. Groups: the runtime closure of ``raypipe``, what ``[dev]`` adds, and
the rest (pip itself, anything installed by hand). Sizes are apparent bytes of the files.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterable
from importlib.metadata import Distribution, PackageNotFoundError, distribution, distributions

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def size_of(dist: Distribution) -> int:
    total = 0
    for file in dist.files or ():
        with contextlib.suppress(OSError):  # listed in RECORD, removed since
            total += file.locate().stat().st_size
    return total


def requirements(dist: Distribution, extras: Iterable[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(name, extras) of each requirement that applies with ``extras`` (markers: extra only)."""
    wanted = set(extras)
    found = []
    for line in dist.requires or ():
        spec, _, marker = line.partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if extra and extra.group(1) not in wanted:
            continue
        if 'platform_system == "Windows"' in marker or 'sys_platform == "win32"' in marker:
            continue
        match = _NAME.match(spec)
        if match:
            inner = tuple(e.strip() for e in (match.group(2) or "[]")[1:-1].split(",") if e.strip())
            found.append((canonical(match.group(1)), inner))
    return found


def closure(root: str, extras: Iterable[str] = ()) -> set[str]:
    """Installed distributions ``root[extras]`` needs, itself included."""
    seen: set[str] = set()
    stack = [(canonical(root), tuple(extras))]
    expanded: set[tuple[str, tuple[str, ...]]] = set()
    while stack:
        name, wanted = stack.pop()
        if (name, wanted) in expanded:
            continue
        expanded.add((name, wanted))
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        seen.add(name)
        stack.extend(requirements(dist, wanted))
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=25, help="Largest distributions to list.")
    parser.add_argument(
        "--pulled-by", action="append", default=[], help="Also show what REQ[extras] adds alone."
    )
    args = parser.parse_args()
    sizes = {canonical(d.metadata["Name"]): size_of(d) for d in distributions()}
    runtime = closure("raypipe")
    dev = closure("raypipe", ["dev"]) - runtime
    rest = set(sizes) - runtime - dev
    mib = 1024**2
    print(f"all distributions: {sum(sizes.values()) / mib:,.0f} MiB in {len(sizes)}")
    for label, group in (("runtime (raypipe)", runtime), ("[dev] adds", dev), ("other", rest)):
        print(f"{label}: {sum(sizes.get(n, 0) for n in group) / mib:,.0f} MiB in {len(group)}")
    print(f"\nlargest {args.top}:")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1])[: args.top]:
        where = "runtime" if name in runtime else "dev" if name in dev else "other"
        print(f"  {size / mib:8.1f} MiB  {name:<28} {where}")
    for requirement in args.pulled_by:
        match = _NAME.match(requirement)
        assert match, requirement
        extras = [e for e in (match.group(2) or "[]")[1:-1].split(",") if e]
        others = set()
        for name, inner in requirements(distribution("raypipe"), ()):
            if name != canonical(match.group(1)):
                others |= closure(name, inner)
        alone = closure(match.group(1), extras) - others - {"raypipe"}
        total = sum(sizes.get(n, 0) for n in alone)
        print(f"\n{requirement} alone pulls {total / mib:,.0f} MiB: {', '.join(sorted(alone))}")


if __name__ == "__main__":
    main()
