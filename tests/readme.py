"""The README's shell blocks, as the tests read them (issue 19: so the README
cannot rot again).

A block is marked by an HTML comment on the line before its fence, which
GitHub does not show:

    <!-- readme-test -->                 run against the simulator stack
    <!-- readme-test: stripe -->         run against the Stripe-mode stack
    <!-- readme-test: skip: <reason> --> not run, and why

Every ``sh`` block that talks to the running service (``curl``, ``$API``,
``temporal workflow``) carries one. In a block that runs, each request whose
answer is shown (``curl -i``) says what it answers in its comment,
``# → 202``, optionally with words in quotes that the answer holds
(``# → 200 "succeeded"``); a request inside ``$(…)`` only feeds a variable.
Each block runs on its own, in a fresh shell that has only ``KEY`` and
``API`` (and ``TEMPORAL_ADDRESS``) set: a block that needs a payment makes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = re.compile(r"<!--\s*readme-test(?::\s*(?P<how>.*?))?\s*-->")
EXPECT = re.compile(r"#\s*→\s*(?P<code>\d{3})(?P<rest>.*)$")
QUOTED = re.compile(r'"([^"]+)"')
STATUS_LINE = re.compile(r"HTTP/[\d.]+ (\d{3}) ")  # a body ends with no newline
TALKS_TO_SERVICE = re.compile(r"\bcurl\b|\$API\b|temporal workflow")


@dataclass(frozen=True)
class Expected:
    code: int
    holds: tuple[str, ...] = ()


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    heading: str
    marker: str | None  # None: unmarked; "" run on the simulator; "stripe"; "skip: …"
    text: str
    expected: list[Expected] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"README.md:{self.line} ({self.heading})"

    @property
    def runs_on(self) -> str | None:
        if self.marker is None or self.marker.startswith("skip"):
            return None
        return self.marker or "simulator"

    def commands(self) -> list[str]:
        """The block's commands, continuation lines joined."""
        joined, current = [], ""
        for raw in self.text.splitlines():
            current += raw.rstrip()
            if current.endswith("\\"):
                current = current[:-1] + " "
                continue
            if current.strip():
                joined.append(current.strip())
            current = ""
        return joined


def blocks(readme: Path = README) -> list[Block]:
    found: list[Block] = []
    lines = readme.read_text().splitlines()
    heading, previous, i = "", "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("# ").strip()
        if line.startswith("```"):
            info = line[3:].strip()
            start = i
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if info.split(" ")[0] == "sh":
                match = MARKER.search(previous)
                block = Block(
                    start + 1,
                    heading,
                    None if match is None else (match.group("how") or ""),
                    "\n".join(body) + "\n",
                )
                for command in block.commands():
                    expected = EXPECT.search(command)
                    if expected:
                        holds = tuple(QUOTED.findall(expected.group("rest")))
                        block.expected.append(Expected(int(expected.group("code")), holds))
                found.append(block)
        if line.strip():
            previous = line
        i += 1
    return found


def shown_requests(command: str) -> bool:
    """A curl whose answer the reader sees (not one inside ``$(…)`` or sent
    to /dev/null)."""
    if "$(curl" in command or ">/dev/null" in command:
        return False
    return bool(re.search(r"(^|[;&|]\s*)curl\b", command))


def answers(output: str) -> list[tuple[int, str]]:
    """Each HTTP answer in a block's output (``curl -i``): its code and text."""
    starts = [(m.start(), int(m.group(1))) for m in STATUS_LINE.finditer(output)]
    result = []
    for n, (at, code) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(output)
        result.append((code, output[at:end]))
    return result
