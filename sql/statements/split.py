"""A script of several statements cut into one statement each: the `;` that ends a statement,
never one inside a quoted literal or identifier. The CLI (`streamhouse sql --file`, the shell)
and the notebook's `%%sql` cells both cut here, so a script means the same in each."""

from __future__ import annotations


def split_statements(text: str) -> list[str]:
    """Statements separated by `;` outside quotes ('…' literals, "…" identifiers), stripped;
    empty ones (a trailing `;`, blank lines) are left out."""
    statements: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ";":
            statements.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    statements.append("".join(current).strip())
    return [s for s in statements if s]
