"""docker-compose.yml and the Dockerfile against the code: service names, published ports,
PAYMENTS_* variables, search attributes, the commands each container runs, and the
observability services (what Prometheus scrapes, where traces go, what Grafana loads)."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from payments.codec import generate_key
from payments.names import CODEC_PATH, SEARCH_ATTRIBUTES
from payments.production import problems, variable
from payments.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("gateway-simulator", "worker", "api")
OBSERVABILITY_SERVICES = ("prometheus", "grafana", "jaeger")
SERVICES = (
    "postgresql",
    "temporal",
    "temporal-admin-tools",
    "temporal-ui",
    *APP_SERVICES,
    *OBSERVABILITY_SERVICES,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def _default(field: str) -> Any:
    return Settings.model_fields[field].default


def _published_on(service: dict[str, Any]) -> set[tuple[str, int, int]]:
    """(host address, host port, container port), short or long syntax; an
    address left out is every interface, as Docker publishes it."""
    found = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            address = str(entry.get("host_ip", "0.0.0.0"))
            found.add((address, int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split(":")
        assert len(parts) >= 2, f"{entry!r} publishes a random host port"
        address = ":".join(parts[:-2]) or "0.0.0.0"
        found.add((address, int(parts[-2]), int(parts[-1].split("/")[0])))
    return found


def _published(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) pairs."""
    return {(host, container) for _, host, container in _published_on(service)}


# ${VAR}, ${VAR:-default}, ${VAR:?message}: compose's interpolation of the shell's variables.
_INTERPOLATED = re.compile(r"^\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}$")


def _from_shell(value: str | None) -> re.Match[str] | None:
    return None if value is None else _INTERPOLATED.match(value)


def _with_defaults(value: str | None) -> str | None:
    """A value as compose makes it with nothing exported: its default, or
    None where it has none (unset, or a required variable)."""
    found = _from_shell(value)
    if found is None:
        return value
    return found["arg"] if found["op"] in (":-", "-") else None


def _environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return {
            name: value if sep else None
            for name, sep, value in (str(item).partition("=") for item in env)
        }
    return {str(name): None if value is None else str(value) for name, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    text = _dockerfile().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def _dockerfile_cmd() -> list[str]:
    match = re.search(r"^CMD\s+(\[.*\])\s*$", _dockerfile(), re.MULTILINE)
    assert match, "the Dockerfile needs an exec-form CMD"
    parsed = yaml.safe_load(match.group(1))
    assert isinstance(parsed, list)
    return [str(part) for part in parsed]


def _setuptools() -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert isinstance(config, dict)
    return config


def test_every_service_of_the_stack_is_there(services: dict[str, dict[str, Any]]) -> None:
    missing = set(SERVICES) - set(services)
    assert not missing


def test_published_ports_match_the_settings_defaults(
    services: dict[str, dict[str, Any]],
) -> None:
    api_port = _default("api_port")
    assert (api_port, api_port) in _published(services["api"])
    ui_port = _default("temporal_ui_url").port
    assert (ui_port, 8080) in _published(services["temporal-ui"])
    assert (api_port, ui_port) == (8000, 8233)


def test_only_the_api_and_the_uis_are_published_and_only_on_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {
        name: _published_on(service) for name, service in services.items() if _published_on(service)
    }
    # No Temporal frontend (7233), no simulator (8100), no database, no metrics
    # port (Temporal's 8000, the API's and the worker's), no OTLP port (4318).
    assert published == {
        "api": {("127.0.0.1", 8000, 8000)},
        "temporal-ui": {("127.0.0.1", 8233, 8080)},
        "prometheus": {("127.0.0.1", 9090, 9090)},
        "grafana": {("127.0.0.1", 3000, 3000)},
        "jaeger": {("127.0.0.1", 16686, 16686)},
    }
    assert all("expose" not in service for service in services.values())


def test_the_ui_decodes_through_the_apis_codec_endpoint(
    services: dict[str, dict[str, Any]],
) -> None:
    ui_env = _environment(services["temporal-ui"])
    api_port = _default("api_port")
    assert ui_env["TEMPORAL_CODEC_ENDPOINT"] == f"http://localhost:{api_port}{CODEC_PATH}"
    # Worker and API seal and open with the same keys, or neither reads the other.
    for name in ("worker", "api"):
        assert "PAYMENTS_ENCRYPTION_KEYS" in _environment(services[name])
    assert Settings(temporal_ui_url=ui_env["TEMPORAL_CORS_ORIGINS"]).ui_origins()[0] == (
        "http://localhost:8233"
    )


def test_the_worker_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert not worker.get("ports"), "published ports clash once there are two workers"
    assert "container_name" not in worker


def test_every_payments_variable_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    seen = {}
    for name, service in services.items():
        for var in _environment(service):
            if var.startswith("PAYMENTS_"):
                seen[var] = name
    for var in _dockerfile_env():
        if var.startswith("PAYMENTS_"):
            seen[var] = "Dockerfile"
    assert seen, "expected the app services to be configured through PAYMENTS_* variables"
    unknown = {
        var: where
        for var, where in seen.items()
        if var.removeprefix("PAYMENTS_").lower() not in Settings.model_fields
    }
    assert not unknown, f"not fields of Settings: {unknown}"


def _container_env(service: dict[str, Any], exported: dict[str, str]) -> dict[str, str]:
    """The environment compose gives a container of ``service`` when the shell
    running it exports ``exported``."""
    env = {}
    for var, value in _environment(service).items():
        found = _from_shell(value)
        if value is None:
            resolved = exported.get(var)
        elif found is not None:
            resolved = exported.get(found["name"]) or _with_defaults(value)
        else:
            resolved = value
        if resolved is not None:
            env[var] = resolved
    return env


def _app_settings(
    service: dict[str, Any], exported: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The settings a container of ``service`` reads from its environment."""
    with monkeypatch.context() as patch:
        for var in list(os.environ):
            if var.startswith("PAYMENTS_"):
                patch.delenv(var)
        for var, value in _container_env(service, exported).items():
            patch.setenv(var, value)
        return Settings()


# What an operator exports before `up`, as the comment at the top says.
EXPORTED = {
    "PAYMENTS_API_KEYS": '{"sk_live_compose_test": "acme"}',
    "PAYMENTS_OPERATOR_API_KEYS": '["op_compose_test"]',
    "PAYMENTS_CLIENT_SECRET_KEY": "compose-test-signing-key",
    "PAYMENTS_ENCRYPTION_KEYS": generate_key("compose").entry(),
    "PAYMENTS_STRIPE_WEBHOOK_SECRET": "whsec_compose_test",
    "PAYMENTS_SIMULATOR_WEBHOOK_SECRET": "compose-test-simulator-secret",
    "PAYMENTS_SMTP_URL": "smtps://mailer:compose-test@smtp.example.com:465",
    "PAYMENTS_RECEIPT_FROM": "Shop <receipts@shop.example.com>",
    "POSTGRES_PASSWORD": "compose-test-password",
}
# Every secret the service has: its SecretStr settings and its keys.
SECRET_VARIABLES = sorted(
    {
        variable(name)
        for name, field in Settings.model_fields.items()
        if field.annotation in (SecretStr, "SecretStr")
    }
    | {"PAYMENTS_API_KEYS", "PAYMENTS_OPERATOR_API_KEYS"}
)


def test_payments_values_are_valid_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in APP_SERVICES:
        settings = _app_settings(services[name], EXPORTED, monkeypatch)
        assert settings.api_host == "0.0.0.0"
        assert settings.simulator_host == "0.0.0.0"


def test_compose_runs_production_and_a_configured_shell_passes_its_checks(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _dockerfile_env()["PAYMENTS_ENV"] == "production"
    for name in APP_SERVICES:
        assert _environment(services[name])["PAYMENTS_ENV"] == "production", name
        settings = _app_settings(services[name], EXPORTED, monkeypatch)
        assert settings.env == "production"
        assert problems(settings) == [], name
        # What the shell exported is what runs: no value of the file's own.
        assert settings.api_keys == {"sk_live_compose_test": "acme"}
        assert settings.operator_api_keys == ["op_compose_test"]


def test_every_secret_comes_from_the_shell_and_none_is_written_here(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(SECRET_VARIABLES) >= {
        "PAYMENTS_API_KEYS",
        "PAYMENTS_OPERATOR_API_KEYS",
        "PAYMENTS_CLIENT_SECRET_KEY",
        "PAYMENTS_ENCRYPTION_KEYS",
        "PAYMENTS_STRIPE_API_KEY",
        "PAYMENTS_STRIPE_WEBHOOK_SECRET",
    }
    for name in APP_SERVICES:
        env = _environment(services[name])
        for var in SECRET_VARIABLES:
            assert var in env, f"{name} does not pass {var} through"
            found = _from_shell(env[var])
            assert env[var] is None or (found and found["name"] == var), f"{name}: {var}"
            # Required ones stop `up` with a message rather than run on a default.
            if found:
                assert found["op"] == ":?" and found["arg"].strip(), f"{name}: {var}"
    # Temporal's database password: the same exported variable on both sides.
    database = {
        ("postgresql", "POSTGRES_PASSWORD"): _environment(services["postgresql"]),
        ("temporal", "POSTGRES_PWD"): _environment(services["temporal"]),
    }
    for (name, var), env in database.items():
        found = _from_shell(env[var])
        assert found and found["name"] == "POSTGRES_PASSWORD" and found["op"] == ":?", name
    # Nor does a built-in secret, or the old database password, appear anywhere.
    text = (ROOT / "docker-compose.yml").read_text()
    builtins = [
        *_default_factory("api_keys"),
        *_default_factory("operator_api_keys"),
        *(_default(name).get_secret_value() for name in Settings.model_fields if _is_secret(name)),
    ]
    for builtin in filter(None, builtins):
        assert builtin not in text
    assert not re.search(r"(PASSWORD|PWD):\s*[\"']?temporal\b", text)


def _is_secret(name: str) -> bool:
    return Settings.model_fields[name].annotation in (SecretStr, "SecretStr")


def _default_factory(name: str) -> Any:
    factory = Settings.model_fields[name].default_factory
    assert factory is not None
    return factory()  # type: ignore[call-arg]


def test_app_services_reach_temporal_and_the_simulator_by_service_name(
    services: dict[str, dict[str, Any]],
) -> None:
    simulator_port = _default("simulator_port")
    for name in ("worker", "api"):
        env = _environment(services[name])
        assert env.get("TEMPORAL_ADDRESS") == "temporal:7233", name
        gateway = Settings(gateway_url=env["PAYMENTS_GATEWAY_URL"]).gateway_url
        assert (gateway.host, gateway.port) == ("gateway-simulator", simulator_port), name
    ui = _environment(services["api"])["PAYMENTS_TEMPORAL_UI_URL"]
    assert ui is not None
    assert Settings(temporal_ui_url=ui).temporal_ui_url.port == 8233


def test_temporal_runs_on_postgres(services: dict[str, dict[str, Any]]) -> None:
    assert services["postgresql"]["image"].startswith("postgres:16")
    assert _environment(services["temporal"])["DB"] == "postgres12"
    ui_env = _environment(services["temporal-ui"])
    assert ui_env["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_admin_tools_register_exactly_the_contracts_search_attributes(
    services: dict[str, dict[str, Any]],
) -> None:
    script = "\n".join(_command(services["temporal-admin-tools"]))
    registered = re.findall(r"^\s*register\s+(\w+)\s+(\w+)\s*$", script, re.MULTILINE)
    names = [name for name, _ in registered]
    assert len(names) == len(set(names)), "registered twice"
    assert dict(registered) == SEARCH_ATTRIBUTES


def test_app_services_wait_for_search_attributes(services: dict[str, dict[str, Any]]) -> None:
    for name in ("worker", "api"):
        depends = services[name]["depends_on"]
        assert depends["temporal-admin-tools"]["condition"] == "service_completed_successfully"


def test_http_services_have_healthchecks_on_healthz(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, port in (("api", _default("api_port")), ("gateway-simulator", 8100)):
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f":{port}/healthz" in probe, name


def _module_exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return (path / "__main__.py").exists() or path.with_suffix(".py").exists()


def test_containers_run_modules_that_exist_and_are_installed(
    services: dict[str, dict[str, Any]],
) -> None:
    commands = {name: _command(services[name]) for name in APP_SERVICES}
    commands["Dockerfile CMD"] = _dockerfile_cmd()
    assert commands["Dockerfile CMD"] == commands["api"]
    setuptools = _setuptools()
    installed = set(setuptools["packages"]) | set(setuptools.get("py-modules", []))
    for name, command in commands.items():
        assert command[0] == "python", name
        if command[1] == "-m":
            module = command[2]
            assert _module_exists(module), f"{name}: no module {module}"
        else:
            script = ROOT / command[1]
            assert script.exists(), f"{name}: no file {command[1]}"
            module = script.stem
        assert module in installed, f"{name}: {module} is not in [tool.setuptools]"


def test_dockerfile_builds_a_non_root_python_311_image() -> None:
    dockerfile = _dockerfile()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users, "the image must not run as root"
    assert users[-1] not in ("root", "0")


def test_dockerignore_keeps_what_the_image_installs() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    setuptools = _setuptools()
    needed = {"pyproject.toml"}
    needed |= {package.split(".")[0] for package in setuptools["packages"]}
    needed |= {f"{module}.py" for module in setuptools.get("py-modules", [])}
    assert not needed & ignored


def test_retention_is_set_from_payments_retention_days(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = services["temporal-admin-tools"]
    wanted = f"${{PAYMENTS_RETENTION_DAYS:-{_default('retention_days')}}}"
    assert _environment(admin)["PAYMENTS_RETENTION_DAYS"] == wanted
    # The worker checks the namespace against the same number (it warns when shorter).
    for name in ("worker", "api"):
        assert _environment(services[name])["PAYMENTS_RETENTION_DAYS"] == wanted, name
        assert _app_settings(services[name], EXPORTED, monkeypatch).retention_days == 30
        exported = {**EXPORTED, "PAYMENTS_RETENTION_DAYS": "90"}
        assert _app_settings(services[name], exported, monkeypatch).retention_days == 90
    script = "\n".join(_command(admin))
    updates = re.findall(r"^\s*cli operator namespace update --retention (.+)$", script, re.M)
    # tests/integration/test_compose_admin_tools.py runs the script on a dev server.
    assert updates == ['"$$((PAYMENTS_RETENTION_DAYS * 24))h"']


def test_the_archive_is_a_volume_on_the_worker_and_the_api(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert "archive-data" in compose["volumes"]
    for name in ("worker", "api"):
        assert "archive-data:/data/archive" in services[name]["volumes"], name
        assert _environment(services[name])["PAYMENTS_ARCHIVE_DIR"] == "/data/archive", name
    assert _dockerfile_env()["PAYMENTS_ARCHIVE_DIR"] == "/data/archive"
    # A fresh named volume takes the owner of the image's directory: it must be
    # there, the image user's, or the worker cannot write the archive.
    run = " ".join(_dockerfile().replace("\\\n", " ").split())
    assert "mkdir -p /data/archive" in run
    assert "chown -R payments /data" in run


# --- Observability (CONTRACT §15): Prometheus, Grafana, Jaeger and the ops/ files ---


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> the repository path mounted there (``./…`` sources only)."""
    found = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            source, target = str(entry.get("source", "")), str(entry["target"])
        else:
            source, _, rest = str(entry).partition(":")
            target = rest.split(":")[0]
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def _in_container(service: dict[str, Any], path: str) -> Path:
    """The repository file a container of ``service`` sees at ``path``."""
    for target, source in _bind_mounts(service).items():
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return source / path[len(target) :].lstrip("/")
    raise AssertionError(f"{path} is not under any of the service's bind mounts")


def _flag(service: dict[str, Any], name: str) -> str:
    values = [arg.partition("=")[2] for arg in _command(service) if arg.startswith(f"{name}=")]
    assert len(values) == 1, f"expected one {name}=… in {_command(service)}"
    return values[0]


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@pytest.fixture(scope="module")
def prometheus_config(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    path = _in_container(services["prometheus"], _flag(services["prometheus"], "--config.file"))
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _scrape_targets(config: dict[str, Any]) -> dict[str, set[tuple[str, int]]]:
    """Job -> the (host, port) pairs it scrapes, static or found by DNS."""
    found: dict[str, set[tuple[str, int]]] = {}
    for job in config["scrape_configs"]:
        targets = found.setdefault(job["job_name"], set())
        for static in job.get("static_configs", []):
            targets |= {_host_port(target) for target in static["targets"]}
        for dns in job.get("dns_sd_configs", []):
            targets |= {(name, int(dns["port"])) for name in dns["names"]}
    return found


def test_every_file_mounted_from_the_repository_exists(
    services: dict[str, dict[str, Any]],
) -> None:
    mounts = {name: _bind_mounts(service) for name, service in services.items()}
    assert mounts["prometheus"] and mounts["grafana"]
    for name, found in mounts.items():
        for source in found.values():
            assert source.exists(), f"{name} mounts {source.relative_to(ROOT)}, which is missing"
    # Read-only: the stack never writes into the checkout.
    for name in OBSERVABILITY_SERVICES:
        for entry in services[name].get("volumes", []):
            if str(entry).startswith("./"):
                assert str(entry).endswith(":ro"), f"{name}: {entry}"


def test_prometheus_scrapes_the_metrics_addresses_the_services_serve(
    services: dict[str, dict[str, Any]],
    prometheus_config: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    targets = _scrape_targets(prometheus_config)
    api = _app_settings(services["api"], EXPORTED, monkeypatch).api_metrics_address
    worker = _app_settings(services["worker"], EXPORTED, monkeypatch).worker_metrics_address
    temporal = _environment(services["temporal"])["PROMETHEUS_ENDPOINT"]
    assert temporal is not None
    for job, service, address in (
        ("payments-api", "api", api),
        ("payments-worker", "worker", worker),
        ("temporal", "temporal", temporal),
    ):
        host, port = _host_port(address)
        # Every interface of the container, or Prometheus (another container) cannot reach it.
        assert host == "0.0.0.0", f"{service} serves metrics on {address}"
        assert targets[job] == {(service, port)}, job
    # Metrics on their own port, never the API's public one.
    assert _host_port(api)[1] != _default("api_port")
    # Each of `--scale worker=N` is a target of its own: found by DNS, not one static name.
    (worker_job,) = [
        job for job in prometheus_config["scrape_configs"] if job["job_name"] == "payments-worker"
    ]
    assert "static_configs" not in worker_job and worker_job["dns_sd_configs"]
    # The rules it loads are the ones tests/unit/test_observability_config.py checks.
    config_file = _in_container(
        services["prometheus"], _flag(services["prometheus"], "--config.file")
    )
    rules = [(config_file.parent / name).resolve() for name in prometheus_config["rule_files"]]
    assert rules == [ROOT / "ops" / "prometheus" / "alerts.yml"]


def test_traces_go_to_jaegers_otlp_http_port(services: dict[str, dict[str, Any]]) -> None:
    jaeger = _environment(services["jaeger"])
    assert jaeger["COLLECTOR_OTLP_ENABLED"] == "true"
    otlp_host, otlp_port = _host_port(str(jaeger["COLLECTOR_OTLP_HTTP_HOST_PORT"]))
    assert (otlp_host, otlp_port) == ("0.0.0.0", 4318)
    for name, service_name in (("api", "payments-api"), ("worker", "payments-worker")):
        env = _environment(services[name])
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://jaeger:{otlp_port}", name
        assert env["OTEL_SERVICE_NAME"] == service_name, name


def test_grafana_loads_the_mounted_dashboards_from_the_provisioned_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    provisioning = _in_container(grafana, "/etc/grafana/provisioning")
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "payments.yml").read_text())[
        "providers"
    ]
    dashboards = _in_container(grafana, provider["options"]["path"])
    assert (dashboards / "payments.json").is_file()
    home = _environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home is not None and _in_container(grafana, home).is_file()
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    prometheus_port = {target for _, _, target in _published_on(services["prometheus"])}
    assert datasource["url"] == f"http://prometheus:{prometheus_port.pop()}"


def test_grafana_lets_visitors_view_and_only_the_shell_knows_the_admin_password(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _environment(services["grafana"])
    found = _from_shell(env["GF_SECURITY_ADMIN_PASSWORD"])
    assert found and found["name"] == "GRAFANA_ADMIN_PASSWORD", env["GF_SECURITY_ADMIN_PASSWORD"]
    assert found["op"] == ":?" and found["arg"].strip()
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_the_header_says_how_to_export_every_required_variable() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    header = text.split("\nname:", 1)[0]
    exported = set(re.findall(r"^#\s+export (\w+)=", header, re.MULTILINE))
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required and required <= exported, sorted(required - exported)
