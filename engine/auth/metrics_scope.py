"""`/metrics` as one organisation may see it (issue 15, isolation).

The agent's Prometheus registry is shared: its series name topics, groups and jobs by their
stored names (`<org>~<name>`, storage/namespace.py) and label quota series with `org`. A
request in an org's namespace gets only the series that are its org's or no org's: a series
with another org's stored name or another `org` label is left out, and its own stored names
are shown as its clients name them. Admins, the agents and auth-off requests (the global
namespace) get the registry as it is. A text filter, since the registry is rendered once per
scrape and an org's view is rare next to Prometheus' own (an admin key's) scrapes.
"""

from __future__ import annotations

import re

from streamhouse.storage import namespace as ns

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _keep(line: str, org: str) -> str | None:
    """The sample line as `org` sees it, or None when it is another org's."""
    brace = line.find("{")
    if line.startswith("#") or brace < 0:
        return line
    end = line.rfind("}")
    labels = line[brace + 1 : end]
    prefix = org + ns.SEPARATOR
    for name, value in _LABEL.findall(labels):
        if name == "org" and value != org:
            return None
        if ns.SEPARATOR in value and not value.startswith(prefix):
            return None
    return line[: brace + 1] + labels.replace('"' + prefix, '"') + line[end:]


def scoped_metrics(body: bytes, org: str | None) -> bytes:
    """The exposition text `body` as a request of `org` may read it (None: unchanged)."""
    if org is None:
        return body
    lines = (_keep(line, org) for line in body.decode().split("\n"))
    return "\n".join(line for line in lines if line is not None).encode()
