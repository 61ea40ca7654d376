"""A merchant's payments, newest first, one page at a time, from Temporal's
visibility: the window walk behind ``GET /v1/payments`` (CONTRACT §4, §11).

What the visibility store allows shapes it:

- SQL visibility (the dev server's SQLite, and MySQL or PostgreSQL) has no
  ORDER BY: a list comes back by close time, then start time, which says
  nothing about creation (a run that continued as new starts again). So each
  payment carries ``PaymentCreatedAt``, set once when the API starts it, and a
  page is read as windows over it, walking back in time from the cursor (or
  from now), each window small enough to fetch whole and sort here. The sort
  key is the memo's full ``created_at``, then the id, so payments created in
  the same millisecond keep one order across pages.
- SQLite keeps a custom Datetime to the millisecond (it rounds microseconds)
  and compares a query's bound as text, so a bound with microseconds does not
  mean what it says. The attribute is therefore set truncated to the
  millisecond (``created_at_attribute``) and every bound is a whole
  millisecond; ``>=`` and ``<`` on such bounds are exact.
- Counting a window sends no memo back and costs far less than listing it,
  so a window is counted before it is fetched, and narrowed from the top while
  it holds more than twice the page: in proportion to the count, faster when
  the count does not drop (a burst at the top), and aimed just above a payment
  found lower down when a guess comes back empty (a quiet stretch at the top).
  After ``NARROWING_COUNTS`` counts a window of up to ``FETCH_CAP`` is fetched
  whole, since a burst within one millisecond cannot be narrowed.
- After an empty window the walk tries one 32 times longer, a few times (a
  quiet hour or day costs three or four counts); once days came back empty,
  whether anything older exists at all is one ``limit 1`` list below the
  window. Its answer is also a payment the next window can reach to, so a gap
  of a year costs one request, not a walk through the year; no answer makes
  ``has_more: false`` exact.
- SQLite answers a ``limit 1`` list by sorting every match in its range (its
  default order) and a count by reading every row in its range, of every
  merchant (the index is over the attribute alone, the other clauses are
  checked row by row). So the walk keeps its ranges short: it starts from one
  second and gallops, and it probes below only once days came back empty.

Payments started before the attribute existed have none; they are listed
after all the others (they were all created before it), read whole and
sorted here, which stays cheap because their number can only shrink. The
last page of every list pays one request to look for them.

A page so costs a few requests whatever the merchant's history
(``make bench-list`` measures it): its window counts, one list of at most
twice the page, and a few more counts or the probe below when a window came
back empty; a page that spans several quiet stretches pays that once for each.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowExecution
from temporalio.common import SearchAttributePair

from payments import memo, names
from payments.archive import Archive, archived_at
from payments.models import PaymentState

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
# The first window back from the cursor (or now), before any count says how
# dense the merchant's payments are: short, since counting a crowded window
# costs the store every row in it and an empty one is cheap to grow from.
FIRST_SPAN_MS = 1_000
# After an empty window shorter than a day the next is GALLOP times longer
# (from the first: 32 s, 17 min, 9 h, 12 days); after that, one probe.
GALLOP = 32
GALLOP_BELOW_MS = 24 * 3600 * 1000
# Counts a page spends narrowing before it takes a window of up to FETCH_CAP
# payments whole: a burst in a millisecond or two cannot be narrowed to a page.
NARROWING_COUNTS = 8
FETCH_CAP = 1000


def created_at_attribute(created_at: datetime) -> SearchAttributePair[datetime]:
    """``PaymentCreatedAt`` for a payment created at ``created_at``, truncated to
    the millisecond so the store keeps exactly what the bounds compare with."""
    truncated = created_at.replace(microsecond=created_at.microsecond // 1000 * 1000)
    return SearchAttributePair(names.CREATED_AT, truncated)


def _millis(moment: datetime) -> int:
    return (moment - _EPOCH) // _MILLISECOND


def _bound(millis: int) -> str:
    moment = _EPOCH + millis * _MILLISECOND
    return f"'{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z'"


def _key(state: PaymentState) -> tuple[datetime, str]:
    return state.created_at, state.id


async def newest_first(
    client: Client,
    query: str,
    *,
    limit: int,
    after: PaymentState | None,
    after_stamped: bool = True,
    archive: Archive | None = None,
) -> tuple[list[PaymentState], bool]:
    """The ``limit`` newest payments matching ``query`` created before ``after``
    (in the list's order), and whether more follow them.

    Payments started before ``PaymentCreatedAt`` existed (``after_stamped``
    False for such a cursor) follow all the others, newest first too: they
    were all created before it, and their number can only shrink.
    """
    found: list[PaymentState] = []
    if after is None or after_stamped:
        # One more than the page, so has_more is known, not guessed.
        found = await _walk(client, query, limit + 1, after, archive)
        if len(found) > limit:
            return found[:limit], True
        after = None
    unstamped = f"{query} AND {names.CREATED_AT.name} IS NULL"
    states = await _states(await _fetch(client, unstamped, None), archive)
    found += sorted((s for s in states if _before(s, after)), key=_key, reverse=True)
    return found[:limit], len(found) > limit


async def _walk(
    client: Client, query: str, need: int, after: PaymentState | None, archive: Archive | None
) -> list[PaymentState]:
    """At least ``need`` of the newest stamped payments created before ``after``,
    in order, or all there are."""
    ceiling, target = 2 * need, need + need // 4
    found: list[PaymentState] = []
    # The walk reads [lo, hi) in milliseconds; hi None is no upper bound at all,
    # so the first page also shows a payment stamped by a clock a little ahead.
    hi = _millis(after.created_at) + 1 if after else None
    span = FIRST_SPAN_MS
    # Once a window held too many: [far, hi) holds about far_count payments; the
    # next window takes ``share`` of [far, aim), aim being just above a payment
    # seen there (hi until an empty guess made the walk look for one).
    far: int | None = None
    far_count = 0
    share = 1.0
    aim: int | None = None
    counted = 0
    while True:
        top = hi if hi is not None else _millis(datetime.now(UTC)) + 1
        impatient = counted >= NARROWING_COUNTS
        if far is None:
            lo = top - span
        elif far_count <= ceiling or (impatient and far_count <= FETCH_CAP):
            lo = far
        else:
            upper = aim if aim is not None else top
            lo = max(far, upper - max(1, int((upper - far) * share)))
        window = _window(query, lo, hi)
        count = (await client.count_workflows(window)).count
        counted += 1
        if count > ceiling and top - lo > 1 and not (impatient and count <= FETCH_CAP):
            # Narrow by the count's proportion; faster when it did not drop,
            # which means the payments crowd the top of the window.
            share = share * share if far is not None and count >= far_count else target / count
            far, far_count = lo, count
            continue
        if count:
            # Newest millisecond first, each decoded only once the page needs it.
            fetched = sorted(await _fetch(client, window, count), key=_stamp, reverse=True)
            for _, executions in itertools.groupby(fetched, key=_stamp):
                states = [
                    state for state in await _states(executions, archive) if _before(state, after)
                ]
                found += sorted(states, key=_key, reverse=True)
                if len(found) >= need:
                    return found
        hi = lo
        if aim is not None and aim > hi:
            aim = None
        if far is not None:
            far_count -= count
            if lo > far:
                if count:
                    share = target / max(1, far_count)
                    continue
                # An empty guess: the payments lie lower; aim just above one of them.
                seen = await _a_payment_in(client, query, far, hi)
                if seen is not None:
                    aim = seen + 1
                    continue
            far = None
        if count:
            # A short window: reach further back by the density it showed.
            span = max(2 * span, span * 2 * (need - len(found)) // count)
            continue
        if span < GALLOP_BELOW_MS:
            # An empty window: try a much longer one, whose count costs the store
            # only what lies in it.
            span *= GALLOP
            continue
        older = await _a_payment_in(client, query, None, hi)
        if older is None:
            return found
        span = hi - older


def _window(query: str, lo: int, hi: int | None) -> str:
    window = f"{query} AND {names.CREATED_AT.name} >= {_bound(lo)}"
    if hi is not None:
        window += f" AND {names.CREATED_AT.name} < {_bound(hi)}"
    return window


async def _fetch(client: Client, window: str, count: int | None) -> list[WorkflowExecution]:
    # A little over the count, so one page holds it all and no empty page follows.
    page_size = min(1000, count + 16) if count is not None else 1000
    return [execution async for execution in client.list_workflows(window, page_size=page_size)]


def _stamp(execution: WorkflowExecution) -> int:
    created = execution.typed_search_attributes.get(names.CREATED_AT)
    return _millis(created) if created is not None else -1


async def _states(
    executions: Iterable[WorkflowExecution], archive: Archive | None
) -> list[PaymentState]:
    """The payments' memos, decoded (and decrypted, when a codec encrypts them),
    with ``archived_at`` for a closed one whose record is in the archive."""
    states = []
    for execution in executions:
        state = await memo.payment_of(execution)
        if state is None:
            continue
        if execution.close_time is not None:
            state.archived_at = await archived_at(archive, state.id, execution.run_id)
        states.append(state)
    return states


def _before(state: PaymentState, after: PaymentState | None) -> bool:
    return after is None or _key(state) < _key(after)


async def _a_payment_in(client: Client, query: str, lo: int | None, hi: int) -> int | None:
    """The millisecond of some payment created in [lo, hi), or None if none is.

    Visibility answers in its own order (open runs first, latest started first),
    so this is usually, not always, the newest one; the narrowing copes with the rest.
    """
    below = f"{query} AND {names.CREATED_AT.name} < {_bound(hi)}"
    if lo is not None:
        below += f" AND {names.CREATED_AT.name} >= {_bound(lo)}"
    async for execution in client.list_workflows(below, limit=1, page_size=1):
        created = execution.typed_search_attributes.get(names.CREATED_AT)
        if created is not None:
            return _millis(created)
    return None


def quote(value: str) -> str:
    """``value`` as a string literal of Temporal's visibility query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
