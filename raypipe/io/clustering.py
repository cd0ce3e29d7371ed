"""Which files of a dataset belong together: the clustering a manifest promises.

A dataset whose manifest metadata says ``clustered_by: [keys]`` promises that files written under
different ``part`` ids (the ``part-<id>-`` prefix :class:`~raypipe.io.dataset.DatasetWriter`
gives file names) hold disjoint key values. Work that is per key (features per player, uniqueness
checks) can then run on groups of whole parts without a shuffle, and a stage that writes one
part per group of whole parts keeps the promise for its own output.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from raypipe.io.manifest import FileEntry, Manifest

__all__ = ["CLUSTERED_BY", "balance", "clustered_by", "clustered_groups"]

#: Manifest metadata key: the columns by which files (by writer part id) are clustered.
CLUSTERED_BY = "clustered_by"
_PART = re.compile(r"(?:^|/)part-(.+?)-[0-9a-f]{16}-\d{5}\.parquet$")


def clustered_by(manifest: Manifest) -> list[str] | None:
    """The key columns the dataset is clustered by, or None when it makes no such promise."""
    declared = manifest.metadata.get(CLUSTERED_BY)
    if isinstance(declared, str):
        declared = [declared]
    return list(declared) if declared else None


def clustered_groups(
    manifest: Manifest, keys: Sequence[str] | None = None
) -> list[list[FileEntry]] | None:
    """The files of ``manifest`` grouped by writer part id, if it is clustered (by ``keys``).

    None when the metadata makes no such promise (or promises other keys), or when a file name
    carries no part id.
    """
    declared = clustered_by(manifest)
    if not declared or (keys is not None and declared != list(keys)):
        return None
    groups: dict[str, list[FileEntry]] = {}
    for entry in manifest.files:
        match = _PART.search(entry.path)
        if match is None:
            return None
        groups.setdefault(match.group(1), []).append(entry)
    return list(groups.values())


def balance(groups: Sequence[Sequence[FileEntry]], tasks: int) -> list[list[FileEntry]]:
    """Pack file groups into at most ``tasks`` bins of similar total bytes (greedy, largest first).

    Groups are never split, so a bin holds whole clusters.
    """
    bins: list[list[FileEntry]] = [[] for _ in range(max(1, min(tasks, len(groups))))]
    sizes = [0] * len(bins)
    for group in sorted(groups, key=lambda g: -sum(e.bytes for e in g)):
        smallest = sizes.index(min(sizes))
        bins[smallest].extend(group)
        sizes[smallest] += sum(e.bytes for e in group)
    return [b for b in bins if b]
