"""devstack without a Temporal server: the dev server's command line, where ports come
from, what children are told, and supervision of a stand-in child process."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from devstack import (
    DB_FILENAME,
    PROCESS_NAMES,
    GatewayPlan,
    Stack,
    StackConfig,
    StackError,
    connect_host,
    dev_server_command,
    ephemeral_ports,
    free_ports,
    parse_host_port,
    same_search_attribute_type,
    url_port,
)
from devstack.services import access_log_line
from payments.names import SEARCH_ATTRIBUTES


def _flag_values(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, part in enumerate(command) if part == flag]


def test_dev_server_command_registers_every_search_attribute(tmp_path: Path) -> None:
    command = dev_server_command(
        temporal_bin="/venv/bin/temporal",
        host="127.0.0.1",
        port=7233,
        ui_port=8233,
        db_file=tmp_path / DB_FILENAME,
        namespace="default",
        search_attributes=SEARCH_ATTRIBUTES,
        extra_args=["--dynamic-config-value", "limit.maxIDLength=255"],
    )
    assert command[:3] == ["/venv/bin/temporal", "server", "start-dev"]
    registered = dict(value.split("=", 1) for value in _flag_values(command, "--search-attribute"))
    assert registered == SEARCH_ATTRIBUTES
    assert _flag_values(command, "--db-filename") == [str(tmp_path / "temporal.sqlite")]
    assert _flag_values(command, "--ip") == ["127.0.0.1"]
    assert _flag_values(command, "--port") == ["7233"]
    assert _flag_values(command, "--ui-port") == ["8233"]
    assert _flag_values(command, "--namespace") == ["default"]
    assert _flag_values(command, "--sqlite-pragma") == ["journal_mode=wal", "synchronous=full"]
    assert command[-2:] == ["--dynamic-config-value", "limit.maxIDLength=255"]


def test_stack_puts_the_database_in_data_dir(tmp_path: Path) -> None:
    stack = Stack(StackConfig(data_dir=tmp_path), temporal_bin="temporal")
    command = stack.command("temporal")
    assert _flag_values(command, "--db-filename") == [str(tmp_path / DB_FILENAME)]
    assert len(_flag_values(command, "--search-attribute")) == len(SEARCH_ATTRIBUTES)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:7233", ("127.0.0.1", 7233)),
        ("localhost:7299", ("localhost", 7299)),
        ("[::1]:7234", ("::1", 7234)),
        ("temporal", ("temporal", 7233)),
        (":7240", ("127.0.0.1", 7240)),
    ],
)
def test_parse_host_port(address: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(address, 7233) == expected


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("http://127.0.0.1:8233", 8233),
        ("http://localhost:9233/", 9233),
        ("http://temporal-ui", 80),
        ("https://ui.example.test", 443),
    ],
)
def test_url_port(url: str, port: int) -> None:
    assert url_port(url) == port


def test_wildcard_hosts_are_reached_on_loopback() -> None:
    assert connect_host("0.0.0.0") == "127.0.0.1"
    assert connect_host("::") == "::1"
    assert connect_host("localhost") == "localhost"


def test_free_ports_are_outside_the_range_outgoing_connections_take() -> None:
    # An outgoing connection's port, taken between picking a port and its
    # server binding it, kept the stack's mail sink from starting once.
    ephemeral = ephemeral_ports()
    ports = free_ports(8)
    assert len(set(ports)) == 8
    assert not [port for port in ports if port in ephemeral]
    for port in ports:  # and free: each can be listened on
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
            sock.listen()


def test_search_attribute_types_as_the_cli_lists_them() -> None:
    assert same_search_attribute_type("INDEXED_VALUE_TYPE_KEYWORD", "Keyword")
    assert same_search_attribute_type("INDEXED_VALUE_TYPE_KEYWORD_LIST", "KeywordList")
    assert same_search_attribute_type("Int", "Int")
    assert not same_search_attribute_type("INDEXED_VALUE_TYPE_TEXT", "Keyword")


def test_config_from_env_reads_temporal_and_payments_vars(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "localhost:7299")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "payments-dev")
    monkeypatch.setenv("PAYMENTS_TEMPORAL_UI_URL", "http://localhost:9233")
    monkeypatch.setenv("PAYMENTS_API_PORT", "9000")
    monkeypatch.setenv("PAYMENTS_SIMULATOR_PORT", "9100")
    monkeypatch.setenv("PAYMENTS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PAYMENTS_API_KEYS", '{"sk_test_other": "acme"}')
    monkeypatch.delenv("PAYMENTS_GATEWAY_URL", raising=False)
    config = StackConfig.from_env()
    assert (config.temporal_host, config.temporal_port) == ("localhost", 7299)
    assert config.namespace == "payments-dev"
    assert config.ui_port == 9233
    assert config.api_url == "http://127.0.0.1:9000"
    assert config.data_dir == tmp_path / "data"
    assert config.db_file == tmp_path / "data" / DB_FILENAME
    assert config.api_key == "sk_test_other"
    # Unset, the gateway URL follows the simulator wherever it was moved.
    assert config.child_env()["PAYMENTS_GATEWAY_URL"] == "http://127.0.0.1:9100"


def test_config_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    for var in ("TEMPORAL_UI_URL", "API_PORT", "SIMULATOR_PORT", "API_KEYS", "GATEWAY_URL"):
        monkeypatch.delenv(f"PAYMENTS_{var}", raising=False)
    config = StackConfig.from_env()
    assert config.temporal_address == "127.0.0.1:7233"
    assert config.ui_port == 8233
    assert config.api_url == "http://127.0.0.1:8000"
    assert config.simulator_url == "http://127.0.0.1:8100"
    assert config.api_key == "sk_test_demo"


def test_an_explicit_gateway_url_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENTS_GATEWAY_URL", "http://psp.internal:9999")
    assert StackConfig.from_env().child_env()["PAYMENTS_GATEWAY_URL"] == "http://psp.internal:9999"


def test_children_get_the_environment_and_the_stacks_ports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PAYMENTS_GATEWAY", "stripe")
    monkeypatch.setenv("PAYMENTS_API_PORT", "1")  # the stack's own config wins
    config = StackConfig.on_free_ports(tmp_path)
    stack = Stack(config, env={"PAYMENTS_LOG_LEVEL": "DEBUG"})
    assert stack.env["PAYMENTS_GATEWAY"] == "stripe"
    assert stack.env["PAYMENTS_LOG_LEVEL"] == "DEBUG"
    assert stack.env["PAYMENTS_API_PORT"] == str(config.api_port)
    assert stack.env["TEMPORAL_ADDRESS"] == config.temporal_address
    assert stack.env["PAYMENTS_TEMPORAL_UI_URL"] == config.temporal_ui_url
    assert stack.env["PAYMENTS_DATA_DIR"] == str(tmp_path)
    ports = [config.temporal_port, config.ui_port, config.api_port, config.simulator_port]
    assert len(set(ports)) == 4


def test_children_are_the_contracts_entry_points(tmp_path: Path) -> None:
    stack = Stack(StackConfig(data_dir=tmp_path), python="py")
    assert stack.command("simulator") == ["py", "-m", "gateway.simulator"]
    assert stack.command("worker") == ["py", "worker.py"]
    assert stack.command("api") == ["py", "-m", "api"]
    assert stack.command("mail") == [
        "py",
        "-m",
        "devstack.mail",
        "--port",
        "1025",
        "--dir",
        str(tmp_path / "mail"),
    ]
    assert PROCESS_NAMES == ("temporal", "simulator", "localstripe", "mail", "worker", "api")


def test_receipts_go_to_the_stacks_mail_sink_unless_a_server_is_named(tmp_path: Path) -> None:
    config = StackConfig.on_free_ports(tmp_path)
    stack = Stack(config)
    assert "mail" in stack.process_names
    assert stack.env["PAYMENTS_SMTP_URL"] == f"smtp://127.0.0.1:{config.mail_port}"
    assert ("127.0.0.1", config.mail_port) in stack._build("mail").ports
    relay = "smtps://mailer:secret@smtp.example.com:465"
    elsewhere = Stack(replace(config, smtp_url=relay))
    assert "mail" not in elsewhere.process_names
    assert elsewhere.env["PAYMENTS_SMTP_URL"] == relay


def test_unknown_process_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frontend"):
        Stack(StackConfig(data_dir=tmp_path), processes=["frontend"])


def test_banner_has_the_urls_key_and_a_curl_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAYMENTS_GATEWAY", raising=False)
    stack = Stack(StackConfig(data_dir=tmp_path, api_key="sk_test_banner"))
    stack.processes = {name: stack._build(name) for name in ("simulator", "worker", "api")}
    banner = stack.banner()
    assert "http://127.0.0.1:8000/docs" in banner
    assert "Gateway      simulator  http://127.0.0.1:8100" in banner
    assert "sk_test_banner" in banner
    assert "curl -sS -X POST http://127.0.0.1:8000/v1/payments" in banner
    assert "Authorization: Bearer sk_test_banner" in banner


# --- supervision, with a stand-in worker (a few seconds, no server) -----------------

STAND_IN_WORKER = """
import os, sys, time
print("booting", os.environ["TEMPORAL_ADDRESS"])
if os.environ.get("CRASH"):
    print("cannot import workflows", file=sys.stderr)
    sys.exit(3)
print("Worker ready", flush=True)
while True:
    time.sleep(1)
"""


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)


def _worker_only(tmp_path: Path, lines: _Lines, **env: str) -> Stack:
    (tmp_path / "worker.py").write_text(STAND_IN_WORKER)
    return Stack(
        StackConfig.on_free_ports(tmp_path / "data"),
        processes=["worker"],
        env=env,
        output=lines,
        cwd=tmp_path,
        ready_timeout=20,
        stop_timeout=5,
    )


def test_a_dead_worker_is_restarted_and_everything_stops(tmp_path: Path) -> None:
    lines = _Lines()
    with _worker_only(tmp_path, lines) as stack:
        assert (tmp_path / "data").is_dir()
        first = stack.pid("worker")
        stack.kill("worker", signal.SIGKILL)
        stack.wait_ready("worker", timeout=20)
        second = stack.pid("worker")
        assert second != first
        assert stack.processes["worker"].restarts == 1
    assert stack.processes["worker"].returncode is not None
    text = lines.text()
    assert f"[worker] booting {stack.temporal_address}" in text
    assert "worker exited with code -9; restarting" in text
    assert f"stopping worker (pid {second})" in text


def test_a_child_that_dies_while_starting_is_named_with_its_last_lines(
    tmp_path: Path,
) -> None:
    lines = _Lines()
    stack = _worker_only(tmp_path, lines, CRASH="1")
    with pytest.raises(StackError) as failure:
        stack.start()
    message = str(failure.value)
    assert message.startswith("worker exited with code 3 before it was ready")
    assert "[worker] cannot import workflows" in message
    assert stack.processes["worker"].returncode == 3


def test_the_python_running_the_tests_is_the_default_interpreter(tmp_path: Path) -> None:
    assert Stack(StackConfig(data_dir=tmp_path)).python == sys.executable


# --- the gateway: the simulator, a localstripe of the stack's own, or a given server --


@pytest.fixture
def no_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the developer's shell says about gateways, these tests say it themselves."""
    for var in ("GATEWAY", "STRIPE_API_BASE", "STRIPE_API_KEY", "LOCALSTRIPE_PORT"):
        monkeypatch.delenv(f"PAYMENTS_{var}", raising=False)


def test_the_simulator_is_the_default_gateway(tmp_path: Path, no_gateway_env: None) -> None:
    stack = Stack(StackConfig(data_dir=tmp_path))
    assert stack.gateway == GatewayPlan("simulator")
    assert stack.process_names == ("temporal", "simulator", "mail", "worker", "api")
    assert "PAYMENTS_STRIPE_API_BASE" not in stack.env
    assert stack.stripe_api_base is None


def test_stripe_mode_runs_a_localstripe_of_its_own_from_scratch(
    tmp_path: Path, no_gateway_env: None
) -> None:
    config = StackConfig.on_free_ports(tmp_path)
    venv_python = tmp_path / "venv" / "bin" / "python"
    stack = Stack(config, env={"PAYMENTS_GATEWAY": "stripe"}, python=str(venv_python))
    assert stack.process_names == ("temporal", "localstripe", "mail", "worker", "api")
    assert stack.command("localstripe") == [
        str(venv_python.parent / "localstripe"),
        "--port",
        str(config.localstripe_port),
        "--from-scratch",
    ]
    url = f"http://127.0.0.1:{config.localstripe_port}"
    # The worker talks to it: the children are told where it is.
    assert stack.env["PAYMENTS_STRIPE_API_BASE"] == url == stack.stripe_api_base
    assert stack.env["PAYMENTS_LOCALSTRIPE_PORT"] == str(config.localstripe_port)
    assert config.localstripe_port not in {config.api_port, config.simulator_port}


def test_an_empty_stripe_base_is_no_base(tmp_path: Path, no_gateway_env: None) -> None:
    env = {"PAYMENTS_GATEWAY": "stripe", "PAYMENTS_STRIPE_API_BASE": ""}
    stack = Stack(StackConfig(data_dir=tmp_path), env=env)
    assert "localstripe" in stack.process_names
    assert stack.stripe_api_base == "http://127.0.0.1:8420"


def test_the_localstripe_port_is_set_like_the_others(
    monkeypatch: pytest.MonkeyPatch, no_gateway_env: None
) -> None:
    assert StackConfig.from_env().localstripe_port == 8420
    monkeypatch.setenv("PAYMENTS_LOCALSTRIPE_PORT", "9420")
    config = StackConfig.from_env()
    assert config.localstripe_port == 9420
    assert config.localstripe_url == "http://127.0.0.1:9420"


def test_a_given_stripe_server_is_used_and_no_gateway_started(
    tmp_path: Path, no_gateway_env: None
) -> None:
    env = {"PAYMENTS_GATEWAY": "stripe", "PAYMENTS_STRIPE_API_BASE": "http://stripe.test:12111/"}
    stack = Stack(StackConfig(data_dir=tmp_path), env=env)
    assert stack.process_names == ("temporal", "mail", "worker", "api")
    assert stack.gateway == GatewayPlan("stripe", "http://stripe.test:12111")
    assert stack.stripe_api_base == "http://stripe.test:12111/"


def test_an_unknown_gateway_is_refused(tmp_path: Path, no_gateway_env: None) -> None:
    with pytest.raises(ValueError, match="PAYMENTS_GATEWAY must be one of simulator, stripe"):
        Stack(StackConfig(data_dir=tmp_path), env={"PAYMENTS_GATEWAY": "paypal"})


def _banner(stack: Stack) -> str:
    stack.processes = {name: stack._build(name) for name in stack.process_names}
    return stack.banner()


def test_the_banner_names_the_stripe_gateway_and_its_localstripe(
    tmp_path: Path, no_gateway_env: None
) -> None:
    banner = _banner(Stack(StackConfig(data_dir=tmp_path), env={"PAYMENTS_GATEWAY": "stripe"}))
    assert "Gateway      stripe     localstripe at http://127.0.0.1:8420" in banner
    assert "simulator" not in banner.lower() and ":8100" not in banner


def test_the_banner_names_a_given_stripe_server(tmp_path: Path, no_gateway_env: None) -> None:
    env = {"PAYMENTS_GATEWAY": "stripe", "PAYMENTS_STRIPE_API_BASE": "https://api.stripe.com"}
    banner = _banner(Stack(StackConfig(data_dir=tmp_path), env=env))
    assert "Gateway      stripe     https://api.stripe.com" in banner
    assert "localstripe" not in banner and "simulator" not in banner.lower()


def test_localstripe_s_access_log_is_not_printed() -> None:
    request = (
        '::ffff:127.0.0.1 [02/Dec/2026:16:04:41 +0000] "POST /v1/payment_intents HTTP/1.1" '
        '200 895 "-" "Stripe/v1 PythonBindings/16.1.0"'
    )
    assert access_log_line(request)
    assert not access_log_line("======== Running on http://[::]:8420 ========")
    assert not access_log_line("Traceback (most recent call last):")


class _StripeStandIn:
    """An HTTP server on a free port that answers every request with ``status``."""

    def __init__(self, status: int) -> None:
        answer = status

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(answer)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"object": "list", "data": [], "has_more": false}')

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _StripeStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _stripe_stack(tmp_path: Path, base: str, lines: _Lines, **env: str) -> Stack:
    """A stack of a stand-in worker on the Stripe gateway at ``base``."""
    (tmp_path / "worker.py").write_text(STAND_IN_WORKER)
    return Stack(
        StackConfig.on_free_ports(tmp_path / "data"),
        processes=["worker"],
        env={"PAYMENTS_GATEWAY": "stripe", "PAYMENTS_STRIPE_API_BASE": base, **env},
        output=lines,
        cwd=tmp_path,
        ready_timeout=20,
        stop_timeout=5,
        stripe_check_timeout=0.5,
    )


def test_a_stripe_server_that_answers_is_checked_first(
    tmp_path: Path, no_gateway_env: None
) -> None:
    lines = _Lines()
    with _StripeStandIn(200) as stripe, _stripe_stack(tmp_path, stripe.url, lines) as stack:
        assert stack.pid("worker") is not None
    text = lines.text()
    assert f"the Stripe server at {stripe.url} answers" in text
    assert text.index("answers") < text.index("starting worker")


def test_a_stripe_server_that_does_not_answer_stops_the_stack_from_starting(
    tmp_path: Path, no_gateway_env: None
) -> None:
    (port,) = free_ports(1)  # nothing listens there
    base = f"http://127.0.0.1:{port}"
    stack = _stripe_stack(tmp_path, base, _Lines())
    with pytest.raises(StackError) as failure:
        stack.start()
    message = str(failure.value)
    assert f"the Stripe server at PAYMENTS_STRIPE_API_BASE={base} does not serve" in message
    assert "nothing answers there" in message
    assert "leave PAYMENTS_STRIPE_API_BASE unset" in message
    # Said before anything was started.
    assert stack.processes["worker"].pid is None


def test_a_stripe_server_that_refuses_the_key_is_named_so(
    tmp_path: Path, no_gateway_env: None
) -> None:
    lines = _Lines()
    with _StripeStandIn(401) as stripe:
        stack = _stripe_stack(tmp_path, stripe.url, lines, PAYMENTS_STRIPE_API_KEY="sk_wrong")
        with pytest.raises(StackError, match="HTTP 401: the server refuses the key; check "):
            stack.start()
    assert "sk_wrong" not in lines.text()


def test_a_missing_localstripe_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_gateway_env: None
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    stack = Stack(
        StackConfig.on_free_ports(tmp_path / "data"),
        processes=["localstripe"],
        env={"PAYMENTS_GATEWAY": "stripe"},
        python=str(tmp_path / "nowhere" / "python"),
        output=_Lines(),
    )
    with pytest.raises(StackError, match=r"no `localstripe` beside .* or on PATH"):
        stack.start()


# --- what a local stack sets up before any child starts -----------------------------


def _set_up(data_dir: Path, **env: str) -> Stack:
    """A stack of no processes: starting it does only what comes before the children."""
    stack = Stack(StackConfig(data_dir=data_dir), processes=[], env=env)
    stack.start()
    stack.stop()
    return stack


def test_children_run_in_development_unless_the_environment_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAYMENTS_ENV", raising=False)
    assert _set_up(tmp_path / "a").env["PAYMENTS_ENV"] == "development"
    monkeypatch.setenv("PAYMENTS_ENV", "production")
    assert _set_up(tmp_path / "b").env["PAYMENTS_ENV"] == "production"


@pytest.fixture
def wide_umask() -> Iterator[None]:
    """No umask at all: whatever mode a file or directory is created with, it keeps."""
    before = os.umask(0)
    try:
        yield
    finally:
        os.umask(before)


# Paths whose mode was changed after they were made (an audit hook cannot be removed,
# so it records only while a test asks it to).
_chmodded: list[str] | None = None


def _record_chmod(event: str, args: tuple[object, ...]) -> None:
    if event == "os.chmod" and _chmodded is not None and isinstance(args[0], str | Path):
        _chmodded.append(os.fspath(args[0]))


sys.addaudithook(_record_chmod)


@contextlib.contextmanager
def chmods() -> Iterator[list[str]]:
    global _chmodded
    _chmodded = []
    try:
        yield _chmodded
    finally:
        _chmodded = None


def test_key_files_are_private_from_the_moment_they_exist(
    tmp_path: Path, wide_umask: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("PAYMENTS_CLIENT_SECRET_KEY", "PAYMENTS_ENCRYPTION_KEYS"):
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "data"
    with chmods() as changed:
        stack = _set_up(data)
    keys = {data / "client_secret_key", data / "encryption_keys"}
    assert set(data.iterdir()) == keys  # and no temporary file left behind
    for key_file in keys:
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600, key_file.name
        assert key_file.read_text().strip()
        # Never chmod-ed: so 0600 is the mode it was created with, under no umask.
        assert str(key_file) not in changed
    assert stack.env["PAYMENTS_CLIENT_SECRET_KEY"] == (data / "client_secret_key").read_text()
    # The next start reads the same keys.
    again = _set_up(data)
    assert again.env["PAYMENTS_ENCRYPTION_KEYS"] == stack.env["PAYMENTS_ENCRYPTION_KEYS"]
    assert again.env["PAYMENTS_CLIENT_SECRET_KEY"] == stack.env["PAYMENTS_CLIENT_SECRET_KEY"]


def test_the_data_directory_is_the_owners_alone(tmp_path: Path, wide_umask: None) -> None:
    fresh = tmp_path / "fresh" / "data"
    _set_up(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    # One made by an older version, or by hand, is narrowed.
    wide = tmp_path / "wide"
    wide.mkdir(mode=0o755)
    _set_up(wide)
    assert stat.S_IMODE(wide.stat().st_mode) == 0o700


def test_the_apis_worker_is_told_its_metrics_address(tmp_path: Path) -> None:
    config = StackConfig.on_free_ports(tmp_path)
    stack = Stack(config, env={"PAYMENTS_API_WORKER": "true"})
    assert stack.env["PAYMENTS_API_WORKER_METRICS_ADDRESS"] == config.api_worker_metrics_address
    assert config.api_worker_metrics_url == f"http://{config.api_worker_metrics_address}/metrics"
