"""How hard each fuzz test tries: a fixed, derandomized budget in CI (every fuzz test together
stays within ~40 s on an idle box) and a long, randomised one on demand:

    .venv/bin/pytest tests/fuzz -p no:cacheprovider --hypothesis-profile=long
    STREAMHOUSE_FUZZ=long STREAMHOUSE_FUZZ_EXAMPLES=200000 .venv/bin/pytest tests/fuzz -n 0

`fuzz(ci_examples)` is the settings decorator every fuzz test uses: the CI budget is per test
(a codec that costs 1 ms per example affords more than a request through the engine), the long
budget the same for all. A hang is caught per example (`bounded`), a crash kills the run."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, settings

LONG = "long"
# The long run's examples per test; STREAMHOUSE_FUZZ_EXAMPLES overrides it.
LONG_EXAMPLES = 20_000
# Seconds one example may take before it counts as a hang (the decoders here take milliseconds).
HANG_S = 20.0

F = TypeVar("F", bound=Callable[..., Any])
# No explain phase: it reruns a failure hundreds of times to say which lines matter (a minute
# against the engine); the failing input itself is what a fix needs.
_PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.large_base_example]


def register_profiles() -> None:
    settings.register_profile(LONG, deadline=None, suppress_health_check=_QUIET, print_blob=True, phases=_PHASES)


def long_run() -> bool:
    return os.environ.get("STREAMHOUSE_FUZZ") == LONG or settings.get_current_profile_name() == LONG


def fuzz(ci_examples: int) -> Callable[[F], F]:
    """The settings of one fuzz test: `ci_examples` derandomized examples in CI, else the long run's."""
    if long_run():
        examples = int(os.environ.get("STREAMHOUSE_FUZZ_EXAMPLES", LONG_EXAMPLES))
        return settings(
            max_examples=examples, deadline=None, suppress_health_check=_QUIET, derandomize=False, phases=_PHASES
        )
    # database=None: a CI run neither reads nor writes .hypothesis; found bugs live as @example.
    return settings(
        max_examples=ci_examples,
        deadline=None,
        suppress_health_check=_QUIET,
        derandomize=True,
        database=None,
        phases=_PHASES,
    )


class Hang(AssertionError):
    """One example ran past HANG_S: a decoder that does not terminate on its input."""


@contextlib.contextmanager
def bounded(seconds: float = HANG_S) -> Iterator[None]:
    """Fail the example with Hang if it runs longer than `seconds` (SIGALRM: main thread only,
    and Python code only; a hang inside C code is left to pytest-timeout)."""

    def expire(_sig: int, _frame: FrameType | None) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    # pytest-timeout (method signal) arms the same timer for the whole test: keep its deadline.
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer) if outer else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))
