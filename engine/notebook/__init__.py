"""Jupyter support: `%load_ext streamhouse` (SQL magics in `magics.py`), HTML for the SDK's
values and query results (`html.py`), progress bars (`progress.py`).

Importing this package imports neither IPython nor tqdm: the SDK uses it outside notebooks.
"""

from __future__ import annotations

import sys
from typing import Any


def register_formatters(shell: Any) -> None:
    """Show pyarrow Tables (query results) and topics as HTML tables in this IPython shell."""
    import pyarrow as pa

    from streamhouse.api import html
    from streamhouse.storage.model import TopicInfo

    formatter = shell.display_formatter.formatters["text/html"]
    formatter.for_type(pa.Table, html.arrow_table)
    formatter.for_type(TopicInfo, html.topic_info)


def running_shell() -> Any | None:
    """The IPython shell this process runs in, if any (without importing IPython)."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def register_in_running_shell() -> None:
    """What a client opened in a notebook does, so results render as HTML without %load_ext."""
    shell = running_shell()
    if shell is not None and hasattr(shell, "display_formatter"):
        register_formatters(shell)


def load_ipython_extension(shell: Any) -> None:
    """`%load_ext streamhouse`: the %sql / %%sql magics and the HTML formatters."""
    from streamhouse.notebook.magics import SqlMagics

    shell.register_magics(SqlMagics)
    register_formatters(shell)
