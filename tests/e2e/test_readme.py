"""The README's shell blocks, run as written against the stack `make run`
starts (on free ports: the README's default addresses are replaced by the
stack's). Each block runs on its own in a fresh bash with only KEY, API and
TEMPORAL_ADDRESS set; every answer it shows (curl -i) must have the code its
comment says (# → 202), holding the words in quotes there. See tests/readme.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import httpx
import pytest
from readme import Block, answers, blocks

from devstack import Stack, StackConfig
from devstack.config import ROOT

pytestmark = pytest.mark.e2e

ON_SIMULATOR = [b for b in blocks() if b.runs_on == "simulator"]
ON_STRIPE = [b for b in blocks() if b.runs_on == "stripe"]
BLOCK_TIMEOUT_SECONDS = 150


@pytest.fixture(scope="module")
def stripe_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`PAYMENTS_GATEWAY=stripe make run`, as the README's Stripe section has it."""
    env = {"PAYMENTS_GATEWAY": "stripe", "PAYMENTS_STRIPE_API_BASE": ""}
    config = StackConfig.on_free_ports(tmp_path_factory.mktemp("readme-stripe"))
    with Stack(config, env=env, output=lambda _: None) as stack:
        yield stack


def as_run_here(text: str, stack: Stack) -> str:
    """The block with the README's default addresses replaced by the stack's."""
    defaults = [
        ("http://127.0.0.1:8000", stack.api_url),
        ("http://127.0.0.1:8233", stack.temporal_ui_url),
    ]
    if stack.stripe_api_base is not None:
        defaults.append(("http://127.0.0.1:8420", stack.stripe_api_base))
    else:
        defaults.append(("http://127.0.0.1:8100", stack.simulator_url))
    for default, here in defaults:
        text = text.replace(default, here)
    return text


async def run_block(block: Block, stack: Stack) -> tuple[int, str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "KEY": stack.api_key,
        "API": stack.api_url,
        "TEMPORAL_ADDRESS": stack.temporal_address,
    }
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        as_run_here(block.text, stack),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), BLOCK_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        raise AssertionError(f"{block.name} did not finish:\n{output.decode()}") from None
    assert process.returncode is not None
    return process.returncode, output.decode()


def check(block: Block, code: int, output: str) -> None:
    assert code == 0, f"{block.name} exited {code}:\n{output}"
    shown = answers(output)
    assert [c for c, _ in shown] == [e.code for e in block.expected], f"{block.name}:\n{output}"
    for (_, text), expected in zip(shown, block.expected, strict=True):
        for words in expected.holds:
            assert words.lower() in text.lower(), f"{block.name}: no {words!r} in:\n{text}"


@pytest.mark.parametrize("block", ON_SIMULATOR, ids=[b.name for b in ON_SIMULATOR])
async def test_the_block_runs_as_the_readme_says(
    stack: Stack, simulator: httpx.AsyncClient, block: Block
) -> None:
    try:
        code, output = await run_block(block, stack)
    finally:
        # A block that injects faults must not leave them for the next test.
        await simulator.delete("/_faults")
    check(block, code, output)


@pytest.mark.parametrize("block", ON_STRIPE, ids=[b.name for b in ON_STRIPE])
async def test_the_block_runs_on_stripe_as_the_readme_says(
    stripe_stack: Stack, block: Block
) -> None:
    check(block, *await run_block(block, stripe_stack))
