"""Jupyter support: `%load_ext streamhouse` (SQL magics in `magics.py`) on top of the SDK. The
HTML views of values and results (engine/api/html.py) and the shell detection the SDK needs
itself (engine/client/shell.py, progress bars in engine/client/progress.py) live below the SDK,
so the SDK never imports this package; their names stay importable from here.

Importing this package imports neither IPython nor tqdm: the SDK uses it outside notebooks.
"""

from __future__ import annotations

from typing import Any

from streamhouse.client.shell import register_formatters, register_in_running_shell, running_shell

__all__ = ["load_ipython_extension", "register_formatters", "register_in_running_shell", "running_shell"]


def load_ipython_extension(shell: Any) -> None:
    """`%load_ext streamhouse`: the %sql / %%sql magics and the HTML formatters."""
    from streamhouse.notebook.magics import SqlMagics

    shell.register_magics(SqlMagics)
    register_formatters(shell)
