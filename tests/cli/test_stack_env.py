"""Every command finds the stack `prefloop up` runs: it writes its settings to `<state dir>/env`;
commands started in the directory above read them when no stack setting is set (and say so),
`prefloop env` prints them for other shells. Against a real Redis and a real model directory."""

from __future__ import annotations

import json
import stat
import subprocess

from cli.localstack import STACK_KEYS, read_stack_env, write_stack_env
from prefloop.artifacts import ArtifactStore
from tests.cli.test_cli_output import run_jobs, writing_job
from tests.support.services import PREFLOOP, free_port, prefloop_env


def bare_env(**extra) -> dict[str, str]:
    """A shell with none of the stack's settings, as after opening a new terminal."""
    env = {k: v for k, v in prefloop_env().items() if k not in STACK_KEYS and k != "PREFLOOP_STATE_DIR"}
    return {**env, **extra}


def prefloop(args: list[str], cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(PREFLOOP + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_the_env_file_is_private_and_round_trips(tmp_path):
    values = {
        "REDIS_URL": "redis://127.0.0.1:6390/0",
        "LABEL_STUDIO_API_KEY": "tok'en with spaces",
        "MODEL_DIR": str(tmp_path / "models dir"),
        "PORT": "9090",
        "PROJECT_TITLE": "prefloop demo",
    }
    path = write_stack_env(tmp_path / ".prefloop", values)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_stack_env(path) == {k: v for k, v in values.items() if k != "PORT"}


def test_commands_in_the_directory_of_prefloop_up_use_its_stack(tmp_path, settings):
    """With no setting in the environment, `jobs` asks the stack's Redis and `versions` reads its
    MODEL_DIR; stderr says where the settings came from."""
    job_id = run_jobs(settings, 51, writing_job)[0]
    store = ArtifactStore(settings.model_dir)
    with store.staging(51, "reward") as staged:
        (staged / "config.json").write_text("{}")
        (staged / "metrics.json").write_text(json.dumps({"eval/accuracy": 0.75}))
        version = store.publish(51, "reward", staged)
    write_stack_env(
        tmp_path / ".prefloop",
        {
            "REDIS_URL": settings.redis_url,
            "MODEL_DIR": str(settings.model_dir),
            "LABEL_STUDIO_URL": "http://127.0.0.1:9",
            "LABEL_STUDIO_API_KEY": "t",
        },
    )

    jobs = prefloop(["jobs", "--project", "51"], tmp_path, bare_env())
    assert jobs.returncode == 0 and job_id in jobs.stdout, jobs.stdout + jobs.stderr
    assert f"using the local stack of `prefloop up` (settings from {tmp_path / '.prefloop' / 'env'})" in jobs.stderr
    versions = prefloop(["versions", "--project", "51"], tmp_path, bare_env())
    assert versions.returncode == 0 and version in versions.stdout, versions.stdout + versions.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = prefloop(["jobs", "--project", "51"], elsewhere, bare_env(PREFLOOP_STATE_DIR=str(tmp_path / ".prefloop")))
    assert job_id in found.stdout, found.stdout + found.stderr


def test_a_setting_in_the_environment_means_the_file_is_not_read(tmp_path, settings):
    """Whoever sets one of the stack's settings configures by hand: no mix of two deployments."""
    write_stack_env(tmp_path / ".prefloop", {"REDIS_URL": settings.redis_url, "MODEL_DIR": str(settings.model_dir)})
    r = prefloop(["jobs"], tmp_path, bare_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    assert r.returncode == 1 and "unreachable" in r.stderr and "local stack" not in r.stderr, r.stderr


def test_prefloop_env_prints_export_lines_a_shell_can_eval(tmp_path, settings):
    state = tmp_path / "state"
    write_stack_env(state, {"REDIS_URL": settings.redis_url, "LABEL_STUDIO_API_KEY": "a b'c"})
    script = f'eval "$({" ".join(PREFLOOP)} env --state-dir {state})" && echo "$REDIS_URL|$LABEL_STUDIO_API_KEY"'
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=bare_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"{settings.redis_url}|a b'c", r.stdout + r.stderr
    missing = prefloop(["env", "--state-dir", str(tmp_path / "none")], tmp_path, bare_env())
    assert missing.returncode == 1 and missing.stdout == "" and "prefloop up" in missing.stderr
