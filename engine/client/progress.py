"""Progress bars for long SDK calls (bulk produce, waiting for a job to catch up).

tqdm.auto draws a widget in Jupyter and a text bar elsewhere. By default a bar is shown only
in a notebook kernel: scripts and tests stay quiet unless they ask with progress=True.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from streamhouse.client.shell import running_shell


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython, not a plain interpreter)."""
    shell = running_shell()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


@contextmanager
def progress(total: int, description: str, enabled: bool | None = None) -> Iterator[Callable[[int], object]]:
    """Yield `advance(n)`; draw a bar of `total` units when enabled (None: only in notebooks)."""
    if not (in_notebook() if enabled is None else enabled):
        yield lambda n: None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=description, unit="rows", unit_scale=True, dynamic_ncols=True) as bar:
        yield bar.update
