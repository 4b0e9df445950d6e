"""How user mistakes reach the terminal: a few lines that say what is wrong, not a traceback."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode


def user_error(exc: BaseException) -> ValueError | FileNotFoundError | None:
    """The user-facing error behind ``exc`` (Hydra wraps constructor errors), if it is one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ValueError | FileNotFoundError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn bad configs and bad data into a short message and exit code 1 in a single run.

    In a multirun the error propagates, so Hydra finishes the other jobs first and then reports
    the failed job with its overrides. ``HYDRA_FULL_ERROR=1`` keeps the full traceback.
    """
    try:
        yield
    except Exception as exc:
        err = user_error(exc)
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if err is None or multirun or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"Error: {err}", file=sys.stderr)
        print("(set HYDRA_FULL_ERROR=1 for the full traceback)", file=sys.stderr)
        sys.exit(1)
