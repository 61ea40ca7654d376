"""The README's shell blocks are marked and say what they answer (see
tests/readme.py); tests/e2e/test_readme.py runs the ones marked to run."""

from __future__ import annotations

import re

import pytest
from readme import TALKS_TO_SERVICE, Block, blocks, shown_requests

BLOCKS = blocks()
SERVICE_BLOCKS = [b for b in BLOCKS if TALKS_TO_SERVICE.search(b.text)]
RUN = [b for b in BLOCKS if b.runs_on is not None]


def test_the_readme_has_blocks_that_run() -> None:
    assert len(RUN) >= 10
    assert {b.runs_on for b in RUN} >= {"simulator"}


@pytest.mark.parametrize("block", SERVICE_BLOCKS, ids=[b.name for b in SERVICE_BLOCKS])
def test_every_block_that_talks_to_the_service_is_marked(block: Block) -> None:
    assert block.marker is not None, f"{block.name}: mark it <!-- readme-test --> or skip it"
    if block.marker.startswith("skip"):
        assert block.marker.removeprefix("skip").strip(" :"), f"{block.name}: skip says why"
    else:
        assert block.marker in ("", "stripe"), block.marker


@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_every_shown_request_says_what_it_answers(block: Block) -> None:
    for command in block.commands():
        if not shown_requests(command):
            continue
        flags = re.findall(r"\s-([a-zA-Z]+)\b", command)
        assert any("i" in f for f in flags), f"{block.name}: show the answer (-i): {command}"
        assert "# →" in command, f"{block.name}: say its code (# → 200): {command}"


@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_a_block_that_runs_has_no_placeholder(block: Block) -> None:
    assert "pay_..." not in block.text and "…" not in block.text, block.name
