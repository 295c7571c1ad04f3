"""One settings class for the whole project, read from ``FAITHAUDIT_*`` environment variables."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faithaudit"


class Settings(BaseSettings):
    """Every setting has a ``FAITHAUDIT_`` environment variable (``FAITHAUDIT_TORCH_THREADS=2``)."""

    model_config = SettingsConfigDict(env_prefix="FAITHAUDIT_", extra="ignore")

    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where dequantized models are cached (one folder per model).",
    )
    data_dir: Path = Field(default=Path(".faithaudit"), description="Where the service keeps its data.")
    default_model: str = Field(default="smollm2-135m-instruct", description="Model used when a request names none.")
    torch_threads: int | None = Field(
        default=None, ge=1, description="torch.set_num_threads for audits; unset keeps torch's default."
    )
    device: str = Field(
        default="cpu",
        description="Where a worker runs the model: cpu, cuda, cuda:N, or auto (accelerate's device_map over every "
        "visible GPU, for a model larger than one).",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32",
        description="The weights' dtype in a worker. The LM head runs in float32 and log-probs in float64 whatever "
        "it is.",
    )
    batch_size: int | Literal["auto"] = Field(
        default="auto",
        description="Contexts scored in one forward call over a shared cached prefix (1-256); auto: 1 on CPU, bounded "
        "by the GPU's total memory on CUDA (never by a timing or the memory free at run time).",
    )
    max_sources: int = Field(default=200, ge=1, description="Most sources one audit may have.")
    max_source_chars: int = Field(default=20_000, ge=1, description="Most characters in one source's text.")

    # -- the service -----------------------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None, description="sqlite:///path or postgresql+psycopg://...; default: SQLite under data_dir."
    )
    db_pool_size: int = Field(
        default=10,
        ge=1,
        le=200,
        description="PostgreSQL connections each process keeps open (as many more may open for a burst). The API "
        "opens them all at start-up, so that a burst of submits never waits on new connections.",
    )
    broker_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker (Redis).")
    queue_name: str = Field(default="faithaudit", description="Celery queue the audits go to.")
    served_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["smollm2-135m-instruct"],
        description="Model names the service accepts in model.name, comma-separated or a JSON list: built-in names "
        "or local model folders (API clients cannot name arbitrary paths).",
    )
    model_queues: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Per-model Celery queues, 'model=queue,...' or a JSON object: audits of that model go to that "
        "queue (a worker started with `faithaudit worker --queues QUEUE` takes them); every other audit, and every "
        "job, goes to queue_name. Each model must be served.",
    )
    lease_seconds: float = Field(default=30.0, gt=0, description="A worker's lease on an audit; renewed by heartbeat.")
    reaper_interval_seconds: float = Field(default=5.0, gt=0, description="How often expired leases are reaped.")
    max_attempts: int = Field(default=3, ge=1, description="Tries before an audit or a job fails for good.")
    shard_passes: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="Split an audit whose planned passes exceed this into shards that any worker of its queue runs "
        "(a Celery group), assembled once all are in; 0 (the default): every audit runs on one worker. The report "
        "equals the single-worker one; each shard adds one full-context pass.",
    )
    requeue_after_seconds: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        description="Queued work that no worker claimed this long after it was sent is sent again when the broker "
        "holds fewer messages than there are queued items (lost in a broker restart); default two leases.",
    )
    quota_max_active_audits: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Per tenant: most audits and gate runs queued or running at once (429 beyond); unset: no limit.",
    )
    quota_tokens_per_hour: int | None = Field(
        default=None,
        ge=1_000,
        le=10**12,
        description="Per tenant: most planned tokens (POST /v1/audits answers each audit's) submitted in any hour "
        "(429 with Retry-After beyond); unset: no limit.",
    )
    max_body_bytes: int = Field(default=2_000_000, ge=1024, description="Larger request bodies get 413.")
    body_read_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A client that stops sending its body this long gets 408."
    )
    signing_secret: str | None = Field(
        default=None,
        description="HMAC key for signed report links (at least 32 bytes in production). Unset: a random one is "
        "generated on first start and kept in data_dir/signing_secret, shared by the API processes on that disk.",
    )
    retention_days: float | None = Field(
        default=None,
        gt=0,
        description="Delete finished audits (request, report, events) and jobs older than this; unset keeps them.",
    )
    metrics_token: str | None = Field(
        default=None,
        description="Bearer token that /metrics requires. Unset: open in development, refused in production.",
    )
    public_url: str | None = Field(
        default=None,
        description="The API's public base URL (https://audits.example.com); report links are built from it, never "
        "from the request's Host header. Unset: links are relative paths.",
    )
    key_cache_seconds: float = Field(
        default=5.0, ge=0, description="How long the API trusts a checked key (a revocation takes this long)."
    )
    report_link_seconds: int = Field(default=3600, ge=1, description="How long a signed report link works.")
    environment: str = Field(default="development", description="'production' refuses the development secret.")
    callback_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts (host or host:port, comma-separated) a request's callback_url may name; empty: no webhooks.",
    )
    callback_secret: str | None = Field(
        default=None, description="HMAC key of the webhook signature; unset: the signing secret."
    )
    callback_max_retries: int = Field(default=6, ge=0, le=20, description="Webhook retries after the first try.")
    callback_retry_seconds: float = Field(
        default=10.0, gt=0, description="First retry delay; doubles each time, at most 15 minutes."
    )
    callback_timeout_seconds: float = Field(default=10.0, gt=0, description="One webhook POST's timeout.")

    @model_validator(mode="after")
    def _queued_models_are_served(self) -> Settings:
        unserved = sorted(set(self.model_queues) - {*self.served_models, self.default_model})
        if unserved:
            raise ValueError(f"FAITHAUDIT_MODEL_QUEUES names models not served (FAITHAUDIT_SERVED_MODELS): {unserved}")
        return self

    def queue_for(self, model_name: str | None) -> str:
        """The Celery queue of an audit of ``model_name`` (None: the default model)."""
        return self.model_queues.get(model_name or self.default_model, self.queue_name)

    @model_validator(mode="after")
    def _safe_in_production(self) -> Settings:
        if self.is_production and self.signing_secret is not None:
            problem = weak_secret(self.signing_secret)
            if problem:
                raise ValueError(f"FAITHAUDIT_SIGNING_SECRET {problem} (FAITHAUDIT_ENVIRONMENT={self.environment})")
        if self.is_production and self.callback_hosts:
            # the API tells tenants their key and the workers sign with it: in separate containers a generated
            # secret would differ between them, so production names one
            problem = "is unset" if self.callback_secret is None else weak_secret(self.callback_secret)
            if problem:
                raise ValueError(
                    f"FAITHAUDIT_CALLBACK_SECRET {problem}: webhooks are on (FAITHAUDIT_CALLBACK_HOSTS) and "
                    f"FAITHAUDIT_ENVIRONMENT={self.environment}"
                )
        return self

    @field_validator("callback_hosts", mode="before")
    @classmethod
    def _comma_list(cls, v):
        return [h.lower() for h in _split_list(v)]

    @field_validator("served_models", mode="before")
    @classmethod
    def _model_list(cls, v):
        models = _split_list(v)
        if not models:
            raise ValueError("names no model")
        return models

    @field_validator("model_queues", mode="before")
    @classmethod
    def _model_queues(cls, v):
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("{"):
                v = json.loads(text)
            else:
                pairs = [p.split("=", 1) for p in _split_list(text)]
                if any(len(p) != 2 for p in pairs):
                    raise ValueError("write model=queue pairs, comma-separated, or a JSON object")
                v = {m.strip(): q.strip() for m, q in pairs}
        for model, queue in dict(v).items():
            if not model or not _QUEUE.fullmatch(str(queue)):
                raise ValueError(f"{model}={queue!r}: a queue name is letters, digits, '.', '_' or '-'")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        v = v.strip().lower()
        if not _DEVICE.fullmatch(v):
            raise ValueError(f"{v!r} is not a device: use cpu, cuda, cuda:N or auto")
        return v

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, v):
        if isinstance(v, str) and v.strip().lower() == "auto":
            return "auto"
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise ValueError(f"{v!r} is not a batch size: use auto or a whole number from 1 to 256") from None
        if not 1 <= n <= 256:
            raise ValueError(f"{n} is out of range: use auto or a whole number from 1 to 256")
        return n

    @field_validator(
        "metrics_token",
        "signing_secret",
        "public_url",
        "callback_secret",
        "requeue_after_seconds",
        "quota_max_active_audits",
        "quota_tokens_per_hour",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, v):
        return None if isinstance(v, str) and not v.strip() else v

    @property
    def requeue_after(self) -> float:
        return self.requeue_after_seconds or 2 * self.lease_seconds

    @property
    def is_production(self) -> bool:
        return self.environment.strip().lower() in ("production", "prod")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'faithaudit.db').resolve()}"


_DEVICE = re.compile(r"cpu|cuda|cuda:\d+|auto")
_QUEUE = re.compile(r"[A-Za-z0-9._-]{1,128}")


def _split_list(v) -> list[str]:
    """A comma-separated string, a JSON list in a string, or a list: its non-empty stripped items."""
    if isinstance(v, str):
        v = json.loads(v) if v.strip().startswith("[") else v.split(",")
    return [str(h).strip() for h in v if h and str(h).strip()]


KNOWN_SECRETS = frozenset({"dev-only-insecure-secret", "change-me-to-a-long-random-string", "test-secret"})
MIN_SECRET_BYTES = 32


def weak_secret(secret: str) -> str | None:
    """Why ``secret`` may not sign links in production, or None."""
    if secret in KNOWN_SECRETS:
        return "is a published default"
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
