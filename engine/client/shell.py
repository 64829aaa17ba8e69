"""The IPython shell this process runs in, if any, found without importing IPython: the SDK
asks it whether to draw progress bars (progress.py) and, when a client opens inside a notebook,
registers the HTML views of query results and topics there so they render without
`%load_ext streamhouse`. Here, below the client, so the SDK does not import the notebook
package (engine/notebook/ is the `%load_ext` extension built on the SDK)."""

from __future__ import annotations

import sys
from typing import Any


def running_shell() -> Any | None:
    """The IPython shell this process runs in, if any (without importing IPython)."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def register_formatters(shell: Any) -> None:
    """Show pyarrow Tables (query results) and topics as HTML tables in this IPython shell."""
    import pyarrow as pa

    from streamhouse.api import html
    from streamhouse.storage.model import TopicInfo

    formatter = shell.display_formatter.formatters["text/html"]
    formatter.for_type(pa.Table, html.arrow_table)
    formatter.for_type(TopicInfo, html.topic_info)


def register_in_running_shell() -> None:
    """What a client opened in a notebook does, so results render as HTML without %load_ext."""
    shell = running_shell()
    if shell is not None and hasattr(shell, "display_formatter"):
        register_formatters(shell)
