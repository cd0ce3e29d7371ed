"""``raypipe`` with the fake stage kinds registered, for tests that run the CLI as a process.

``python -m tests.support.fake_cli run JOB.yaml`` behaves like ``raypipe run JOB.yaml`` and also
knows ``test.make``, ``test.double`` and ``test.slow``.
"""

from __future__ import annotations

import sys

import raypipe.spec.loading as loading
from raypipe.cli.main import main
from raypipe.stages import registry
from tests.support.fake_stages import FAKE_KINDS

if __name__ == "__main__":
    registry.STAGE_KINDS.update(FAKE_KINDS)
    loading.STAGE_KINDS = registry.STAGE_KINDS
    main(sys.argv[1:])
