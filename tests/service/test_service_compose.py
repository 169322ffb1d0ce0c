"""docker-compose.yml without a Docker engine: the schema essentials, loopback ports, healthchecks and
start order, the GPU reservation, no credentials in the repository, and that every service's command
(and healthcheck) exists in the image: a console script of an installed package, its subcommand and
every option it is given. The compose CLI validates the file too where one is installed."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROJECT_SERVICES = {"mlflow", "ray-head", "ray-gpu-worker", "scheduler", "dashboard"}


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: ${X}, ${X:-default}, ${X-default}, ${X:?error}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        have = env.get(name)
        if (op in (":-", ":?") and not have) or (op in ("-", "?") and have is None):
            if op.endswith("?"):
                raise KeyError(f"{name} is required: {arg}")
            return arg
        return have or ""

    return _VAR.sub(sub, value)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw) -> dict[str, Any]:
    return interpolate(raw, env_example())


def published(port) -> tuple[str, str, str]:
    if isinstance(port, dict):
        return port.get("host_ip", ""), str(port.get("published")), str(port["target"])
    parts = str(port).split(":")
    assert len(parts) == 3, f"port {port} does not name the address it listens on"
    return tuple(parts)


def test_the_services_and_their_images(compose):
    services = compose["services"]
    assert set(services) == {"postgres"} | PROJECT_SERVICES
    assert services["postgres"]["image"].startswith("postgres:16")
    dockerfile = (ROOT / "Dockerfile").read_text()
    declared = set(re.findall(r"^ARG (\w+)", dockerfile, re.M))
    for name in PROJECT_SERVICES:
        s = services[name]
        assert s["image"] == "hybrid-nas:latest" and s["build"]["context"] == "."
        assert set(s["build"]["args"]) <= declared
    for src in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (ROOT / src).exists(), f"the Dockerfile copies {src}, which is not in the repository"
    extras = re.search(r"pip install -e '\.\[(\w+)\]'", dockerfile).group(1)
    import tomllib

    assert extras in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_ports_listen_on_loopback_unless_changed(compose, raw):
    ports = [(name, published(p)) for name, s in compose["services"].items() for p in s.get("ports", [])]
    assert {name for name, _ in ports} == {"postgres", "mlflow", "ray-head", "dashboard"}
    assert all(ip == "127.0.0.1" for _, (ip, _, _) in ports), ports
    bare = interpolate(raw, {k: v for k, v in env_example().items() if k != "NAS_BIND"})  # no NAS_BIND at all
    assert all(published(p)[0] == "127.0.0.1" for s in bare["services"].values() for p in s.get("ports", []))
    changed = interpolate(raw, {**env_example(), "NAS_BIND": "10.0.0.5"})
    assert all(published(p)[0] == "10.0.0.5"
               for s in changed["services"].values() for p in s.get("ports", []))


def test_health_and_start_order(compose):
    services = compose["services"]
    pg = services["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.split(":")[0] in compose["volumes"] and v.split(":")[1] == "/var/lib/postgresql/data"
               for v in pg["volumes"])
    for name, s in services.items():
        for dep, how in s.get("depends_on", {}).items():
            assert how["condition"] == "service_healthy", (name, dep)
            assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no healthcheck"
    assert set(services["scheduler"]["depends_on"]) == {"postgres", "mlflow", "ray-head"}
    assert set(services["mlflow"]["depends_on"]) == {"postgres"}


def test_gpu_workers_reserve_nvidia_devices(compose):
    worker = compose["services"]["ray-gpu-worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and device["count"] == "all"
    assert worker["command"][:3] == ["ray", "start", "--address=ray-head:6380"]


def test_credentials_come_only_from_the_environment(raw):
    text = COMPOSE.read_text()
    for secret in ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"):
        uses = re.findall(r"\$\{" + secret + r"[^}]*\}", text)
        assert uses and all(u.startswith("${" + secret + ":?") for u in uses), uses  # required, no default
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD is required"):
        interpolate(raw, {})
    example = env_example()
    assert example["POSTGRES_PASSWORD"] == example["RAY_AUTH_TOKEN"] == "CHANGE-ME"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert ignored.returncode == 0, ".env must be ignored by git"
    # the scheduler gets the service's URLs: the queue, Optuna, MLflow and Ray
    env = interpolate(raw, example)["services"]["scheduler"]["environment"]
    assert {"NAS_DATABASE_URL", "NAS_STORAGE", "NAS_TRACKING", "RAY_AUTH_TOKEN"} <= set(env)
    assert env["NAS_DATABASE_URL"].startswith("postgresql+psycopg://")


# ----- every command exists -------------------------------------------------------------------------------
def console_scripts() -> dict[str, str]:
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}


def click_command(script: str):
    """The click command behind an installed console script (a typer app becomes one; typer carries its own
    copy of click, so commands are told apart by what they have, not by their class)."""
    target = importlib.metadata.EntryPoint(name=script, value=console_scripts()[script],
                                           group="console_scripts")
    obj = target.load()
    if hasattr(obj, "registered_commands"):  # a typer.Typer
        import typer

        return typer.main.get_command(obj)
    if not isinstance(obj, click.Command):  # a main() that calls its module's click group (ray)
        obj = getattr(importlib.import_module(target.module), "cli", obj)
    assert isinstance(obj, click.Command), f"console script {script} is neither click nor typer: {obj!r}"
    return obj


def check_command(argv: list[str], where: str) -> None:
    scripts = console_scripts()
    assert argv[0] in scripts, f"{where}: {argv[0]} is not a console script of an installed package"
    cmd = click_command(argv[0])
    rest = argv[1:]
    while hasattr(cmd, "commands"):  # a group: the next word is its subcommand
        assert rest, f"{where}: {argv[0]} needs a subcommand"
        sub = cmd.commands.get(rest[0])
        said = " ".join(argv[:len(argv) - len(rest)])
        assert sub is not None, f"{where}: {said} has no subcommand {rest[0]!r}"
        cmd, rest = sub, rest[1:]
    options = {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", []))}
    assert options, f"{where}: {argv[0]} {cmd.name} takes no options"
    for arg in rest:
        if arg.startswith("--"):
            assert arg.split("=", 1)[0] in options, f"{where}: {argv[0]} {cmd.name} has no option {arg}"


def test_every_service_command_exists_in_the_package(compose):
    for name in sorted(PROJECT_SERVICES):
        s = compose["services"][name]
        check_command(s["command"], f"service {name}")
        test = s.get("healthcheck", {}).get("test")
        if test and test[0] == "CMD":
            if test[1] == "python":
                compile(test[3], f"{name} healthcheck", "exec")
            else:
                check_command(test[1:], f"service {name}'s healthcheck")


def test_the_dashboard_and_the_scheduler_are_nas_commands():
    import typer

    from nas.cli import app

    names = {c.name for c in typer.main.get_command(app).commands.values()}
    assert {"serve", "submit", "list", "show", "cancel", "pause", "resume", "db", "dashboard"} <= names


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_the_compose_cli_accepts_the_file(tmp_path):
    cli = compose_cli()
    if cli is None:
        pytest.skip("no compose CLI here (docker compose or docker-compose; .ci/run installs one)")
    r = subprocess.run([*cli, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    resolved = yaml.safe_load(r.stdout)
    assert set(resolved["services"]) == {"postgres"} | PROJECT_SERVICES
    for s in resolved["services"].values():
        for p in s.get("ports", []):
            ip = p["host_ip"] if isinstance(p, dict) else str(p).split(":")[0]
            assert ip == "127.0.0.1", p
    empty = tmp_path / "empty.env"
    empty.write_text("")
    missing = subprocess.run([*cli, "--env-file", str(empty), "-f", str(COMPOSE), "config"],
                             capture_output=True, text=True, cwd=ROOT, timeout=60,
                             env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME")})
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr  # no .env: it says so


def test_no_url_carries_the_password(compose):
    """The password reaches the services as PGPASSWORD, never inside a URL they might show or store."""
    seen = 0
    for name, s in compose["services"].items():
        for key, value in (s.get("environment") or {}).items():
            if isinstance(value, str) and "://" in value:
                seen += 1
                assert "CHANGE-ME" not in value, (name, key)
        if name in PROJECT_SERVICES - {"ray-head", "ray-gpu-worker"}:
            assert s["environment"]["PGPASSWORD"] == "CHANGE-ME", name
    assert seen >= 5
