"""One typed settings object, read from the environment once, in entry points, and passed down.

Nothing here runs at import: `Settings.from_env()` is called by `prefloop serve`, `prefloop
worker`, the CLI commands and the app factory. A bad value raises `SettingsError` naming the
variable, so a process with a typo stops at start instead of misbehaving later.

Every field maps to one environment variable (the field name upper-cased, or `env=` when Label
Studio's conventional name differs). `.env.example` documents each of them; a test holds that.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from prefloop.errors import SettingsError
from prefloop.redact import redact

POLICY_TRAINERS = ("ppo", "dpo", "grpo", "rloo")
"""Policy trainers: PPO, GRPO and RLOO optimise the reward model's score; DPO trains on the pairs."""


def _setting(
    default: Any, help: str, *, env: str | None = None, choices: tuple[str, ...] = (), secret: bool = False
) -> Any:
    return field(default=default, metadata={"help": help, "env": env, "choices": choices, "secret": secret})


@dataclass(frozen=True)
class Settings:
    # --- Label Studio (its conventional environment names) ---------------------------------
    label_studio_url: str = _setting(
        "http://localhost:8080", "Base URL of Label Studio, as the backend and workers reach it."
    )
    label_studio_api_key: str = _setting(
        "", "Label Studio personal access token or legacy token (Account & Settings).", secret=True
    )
    model_dir: Path = _setting(
        Path("./models"), "Where reward-model and policy versions are published (shared by backend and workers)."
    )
    log_level: str = _setting(
        "INFO", "Python logging level.", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    )
    basic_auth_user: str = _setting("", "HTTP basic auth user Label Studio sends to the backend (empty: auth off).")
    basic_auth_pass: str = _setting("", "HTTP basic auth password (set together with BASIC_AUTH_USER).", secret=True)
    webhook_secret: str = _setting(
        "",
        "Shared secret Label Studio sends in the "
        "X-Prefloop-Webhook-Secret header of its webhook (`prefloop "
        "init`/`up` set it on the webhook); when set, /webhook refuses "
        "events without it (empty: /webhook is open).",
        secret=True,
    )
    workers: int = _setting(1, "gunicorn worker processes for `prefloop serve`.")
    threads: int = _setting(8, "gunicorn threads per worker process.")
    port: int = _setting(9090, "Port `prefloop serve` listens on.")
    host: str = _setting("0.0.0.0", "Address `prefloop serve` binds.")
    backend_url: str = _setting(
        "http://localhost:9090",
        "URL of this backend as Label Studio reaches it; `prefloop init` connects it to the project.",
    )
    label_studio_public_url: str = _setting(
        "", "URL people open in a browser to reach Label Studio, printed by `prefloop init` (empty: LABEL_STUDIO_URL)."
    )
    project_title: str = _setting(
        "prefloop", "Title of the project `prefloop init` finds or creates when PROJECTS is empty."
    )

    # --- queue ------------------------------------------------------------------------------
    redis_url: str = _setting("redis://localhost:6379/0", "Redis that carries the RQ queues and job state.")
    queue_prefix: str = _setting(
        "prefloop", "Prefix of queue names and Redis keys, so several deployments can share one Redis."
    )
    projects: tuple[int, ...] = _setting(
        (), "Comma-separated Label Studio project ids prefloop serves; empty: any project connected through /setup."
    )
    job_min_interval: float = _setting(
        10.0, "Seconds between two runs of the same job kind for one project (rate limit for webhook-triggered jobs)."
    )
    job_retry_intervals: tuple[int, ...] = _setting(
        (),
        "Comma-separated seconds to wait before each retry of a "
        "failed job (Label Studio down, worker killed); empty: each "
        "job kind's default backoff (10,30,90 s).",
    )

    # --- models -----------------------------------------------------------------------------
    base_model: str = _setting(
        "gpt2",
        "Hub name or local directory of the base policy (any causal LM; its own chat "
        "template is used when it has one).",
    )
    reward_base_model: str = _setting(
        "",
        "Hub name or local directory of the reward-model backbone: any model "
        "AutoModelForSequenceClassification loads, a causal LM or an encoder such "
        "as BERT/DeBERTa/MiniLM (empty: BASE_MODEL).",
    )
    lora_r: int = _setting(
        0,
        "LoRA rank for policy and reward-model training (0: full fine-tuning). Published LoRA "
        "versions hold the adapter and the name of its base.",
    )
    lora_alpha: float = _setting(0.0, "LoRA alpha (0: 2 * LORA_R).")
    lora_dropout: float = _setting(0.05, "LoRA dropout (PPO runs with dropout off regardless).")
    lora_target_modules: str = _setting(
        "",
        "Comma-separated module names LoRA adapts (empty: the family's default, "
        "e.g. q/k/v/o_proj for Llama and Qwen2, c_attn,c_proj for GPT-2, "
        "query/key/value for BERT; all-linear for others).",
    )
    device: str = _setting("auto", "torch device for workers and scoring: auto, cpu, cuda or cuda:N.")

    # --- generation -------------------------------------------------------------------------
    max_new_tokens: int = _setting(50, "Tokens generated per answer.")
    answers_per_prompt: int = _setting(
        2,
        "Answers generated per task of a ranking project (label_config/ranking.xml, "
        "2 to 9); annotators order them and each ranking becomes K(K-1)/2 pairs. "
        "Pairwise projects always get two.",
    )
    temperature: float = _setting(1.0, "Sampling temperature for answer pairs.")
    top_p: float = _setting(1.0, "Nucleus sampling for answer pairs (1.0: off).")
    top_k: int = _setting(50, "Top-k sampling for answer pairs (0: off).")
    generation_batch_size: int = _setting(
        32, "Prompts per generate() call (each prompt yields both answers in that call)."
    )
    generation_chunk_size: int = _setting(256, "Tasks one generation job fills before it queues the next chunk.")
    chat_template: str = _setting(
        "",
        "Jinja template over `messages` that renders a chat for every model, overriding "
        "the tokenizer's own chat template (empty: the tokenizer's template, or the "
        "built-in 'User:/Assistant:' one for models without one, such as GPT-2).",
    )

    # --- reward model -----------------------------------------------------------------------
    min_new_annotations: int = _setting(
        10,
        "New annotations since the last reward model before annotation events retrain (the Train button always does).",
    )
    predict_batch_size: int = _setting(
        16, "Pairs scored per forward pass when the worker scores tasks for predictions."
    )
    predict_time_budget: float = _setting(
        80.0,
        "Seconds one /predict may spend scoring; tasks not reached come back "
        "without a result and Label Studio asks again later (its limit is 100 "
        "s).",
    )
    max_text_chars: int = _setting(
        20000,
        "Characters per prompt or answer that /predict and /reward score; a longer "
        "text is refused (/reward: 413) or left unscored (/predict), naming this "
        "setting.",
    )
    reward_learning_rate: str = _setting(
        "auto",
        "Reward-model learning rate, or auto: chosen from the backbone's "
        "size (1e-5 for GPT-2 small, larger for smaller models, ~1.5e-3 for "
        "the tiny offline model).",
    )
    reward_epochs: float = _setting(
        30.0,
        "Most passes over the preference pairs per reward-model run; training stops "
        "earlier once the validation loss stops improving and keeps the best "
        "weights.",
    )
    reward_batch_size: int = _setting(8, "Preference pairs per reward-model training step.")
    reward_tracking: str = _setting(
        "none",
        "Experiment tracking for reward training: none, tensorboard or wandb "
        "(used when the package is installed; W&B reads "
        "WANDB_API_KEY/WANDB_MODE).",
    )

    # --- PPO --------------------------------------------------------------------------------
    ppo_min_accuracy: float = _setting(
        0.6, "Eval accuracy a reward model must reach before a PPO job is queued behind it."
    )
    keep_versions: int = _setting(
        5,
        "Published versions kept per project and kind (reward, policy); older ones are "
        "deleted after each publish, never the current or a pinned one (0: keep all).",
    )
    regenerate_after_ppo: bool = _setting(
        False, "After a new policy is published, regenerate answers of tasks with no annotation yet."
    )

    # --- policy trainer ---------------------------------------------------------------------
    policy_trainer: str = _setting(
        "ppo",
        "How the loop trains the policy: ppo, grpo or rloo (against the reward "
        "model, queued after each good enough reward model), or dpo (straight from "
        "the preference pairs, after DPO_MIN_NEW_ANNOTATIONS).",
    )
    dpo_min_new_annotations: int = _setting(
        10,
        "New or changed annotations since the last DPO policy before "
        "annotation events queue a DPO run (POLICY_TRAINER=dpo; the Train "
        "button always does).",
    )

    def __post_init__(self) -> None:
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            raise SettingsError("BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together (one of them is empty)")
        for name in (
            "workers",
            "threads",
            "generation_batch_size",
            "generation_chunk_size",
            "max_new_tokens",
            "predict_batch_size",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{env_name(name)} must be at least 1, got {getattr(self, name)}")
        if not 2 <= self.answers_per_prompt <= 9:
            raise SettingsError(f"ANSWERS_PER_PROMPT must be between 2 and 9, got {self.answers_per_prompt}")
        if not 0 < self.port < 65536:
            raise SettingsError(f"PORT must be between 1 and 65535, got {self.port}")
        if self.temperature <= 0:
            raise SettingsError(f"TEMPERATURE must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise SettingsError(f"TOP_P must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.min_new_annotations < 0 or self.job_min_interval < 0 or self.keep_versions < 0:
            raise SettingsError("TOP_K, MIN_NEW_ANNOTATIONS, JOB_MIN_INTERVAL and KEEP_VERSIONS must not be negative")
        if self.max_text_chars < 1:
            raise SettingsError(f"MAX_TEXT_CHARS must be at least 1, got {self.max_text_chars}")
        if self.reward_tracking not in ("none", "tensorboard", "wandb"):
            raise SettingsError(f"REWARD_TRACKING must be none, tensorboard or wandb, got {self.reward_tracking!r}")
        if self.reward_lr is not None and self.reward_lr <= 0:
            raise SettingsError(f"REWARD_LEARNING_RATE must be auto or a number > 0, got {self.reward_learning_rate!r}")
        if self.reward_epochs <= 0 or self.reward_batch_size < 1 or self.predict_time_budget <= 0:
            raise SettingsError("REWARD_EPOCHS and PREDICT_TIME_BUDGET must be > 0 and REWARD_BATCH_SIZE >= 1")
        if self.policy_trainer not in POLICY_TRAINERS:
            raise SettingsError(
                f"POLICY_TRAINER must be one of {', '.join(POLICY_TRAINERS)}, got {self.policy_trainer!r}"
            )
        if self.dpo_min_new_annotations < 0:
            raise SettingsError(f"DPO_MIN_NEW_ANNOTATIONS must not be negative, got {self.dpo_min_new_annotations}")
        if self.lora_r < 0 or self.lora_alpha < 0 or not 0 <= self.lora_dropout < 1:
            raise SettingsError("LORA_R and LORA_ALPHA must not be negative and LORA_DROPOUT must be in [0, 1)")
        if not 0 <= self.ppo_min_accuracy <= 1:
            raise SettingsError(f"PPO_MIN_ACCURACY must be in [0, 1], got {self.ppo_min_accuracy}")
        for name in ("label_studio_url", "redis_url", "backend_url"):
            url = urlparse(getattr(self, name))
            if not url.scheme or not url.netloc:
                raise SettingsError(
                    f"{env_name(name)} must be a URL like http://host:port, got {redact(getattr(self, name))!r}"
                )
        if urlparse(self.redis_url).scheme not in ("redis", "rediss", "unix"):
            raise SettingsError(
                f"REDIS_URL must start with redis://, rediss:// or unix://, got {redact(self.redis_url)!r}"
            )
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise SettingsError(f"DEVICE must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every field from `environ` (default: os.environ); `overrides` win (tests use them)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = env_name(f.name)
            if f.name in overrides:
                values[f.name] = overrides[f.name]
            elif name in environ:
                values[f.name] = _parse(f, name, environ[name])
        return cls(**values)

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, for logs and the status page."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str):
                value = redact(value)  # a password inside a URL (REDIS_URL=redis://:PASSWORD@host)
            out[env_name(f.name)] = (
                "***" if f.metadata.get("secret") and value else (str(value) if isinstance(value, Path) else value)
            )
        return out

    @property
    def auth_enabled(self) -> bool:
        return bool(self.basic_auth_user)

    @property
    def reward_lr(self) -> float | None:
        """REWARD_LEARNING_RATE as a number, or None for auto (the reward trainer picks one)."""
        raw = str(self.reward_learning_rate).strip().lower()
        if raw == "auto":
            return None
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(
                f"REWARD_LEARNING_RATE must be auto or a number > 0, got {self.reward_learning_rate!r}"
            ) from None

    @property
    def reward_base(self) -> str:
        """The reward-model backbone: REWARD_BASE_MODEL, else BASE_MODEL."""
        return self.reward_base_model or self.base_model


def env_name(field_name: str) -> str:
    for f in dataclasses.fields(Settings):
        if f.name == field_name:
            return f.metadata.get("env") or field_name.upper()
    raise KeyError(field_name)


def documented_settings() -> list[tuple[str, Any, str]]:
    """(ENV_NAME, default, help) for every setting: the source of `.env.example` and the README table."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        elif isinstance(default, bool):
            default = str(default).lower()
        rows.append((env_name(f.name), default, f.metadata["help"]))
    return rows


def _parse(f: dataclasses.Field[Any], name: str, raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    raw = raw.strip()
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("expected true or false")
        if kind == "Path":
            return Path(raw) if raw else f.default
        if kind.startswith("tuple"):
            return tuple(int(part) for part in raw.replace(" ", "").split(",") if part)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind}: {exc}") from None
    choices = f.metadata.get("choices") or ()
    if choices:
        if raw.upper() not in choices:
            raise SettingsError(f"{name}={raw!r} must be one of {', '.join(choices)}")
        return raw.upper()
    return raw
