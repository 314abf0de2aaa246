"""Shared entry-point behaviour of the stage scripts: logging set-up and clean error exits."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from facerec.errors import PipelineInputError

log = logging.getLogger("facerec")


def run_stage(main: Callable[[], None]) -> None:
    """Configure logging once, run `main`, and turn expected problems into one-line errors."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        main()
    except (PipelineInputError, ValueError) as error:
        # Expected problems (bad params, missing credentials, bad archives) carry their fix in
        # the message; a traceback would only hide it.
        log.error("%s", error)
        sys.exit(2)
