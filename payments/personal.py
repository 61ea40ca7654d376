"""Personal data that must not reach a search attribute (CONTRACT §11), nor
a failure or a log line (CONTRACT §16): how an e-mail address is recognised.

Search attributes are Temporal's index: stored in the clear (the payload codec
does not cover them), shown in the Web UI, listed by anyone who may list
workflows, and kept as long as the namespace keeps the workflow. So what goes
into one is a reference, never a person: a customer id may not be an e-mail
address, and neither may a merchant id.
"""

from __future__ import annotations

import re

# Something, an "@", something: what a mail server would try to deliver to.
# Looser than an address grammar on purpose; refusing "ops@shop" costs nothing.
_EMAIL = re.compile(r"[^\s@]@[^\s@]")


def looks_like_email(text: str) -> bool:
    return _EMAIL.search(text) is not None


# A whole address, as mail servers quote one back: "<jane@example.com>".
_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>@]+>?")


def without_addresses(text: str, address: str) -> str:
    """``text`` (a mail server's words) without any address in it, nor
    ``address``'s local part, at most 200 characters."""
    text = _ADDRESS.sub("<address>", text)
    local = address.rpartition("@")[0]
    if local:
        # As a word of its own: the address "a@…" must not eat every letter a.
        alone = rf"(?<![\w.+-]){re.escape(local)}(?![\w.+-])"
        text = re.sub(alone, "<address>", text, flags=re.IGNORECASE)
    return text[:200]
