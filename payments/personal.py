"""Personal data that must not reach a search attribute (CONTRACT §11).

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
