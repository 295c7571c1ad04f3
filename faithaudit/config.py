"""One settings class for the whole project, read from ``FAITHAUDIT_*`` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    max_sources: int = Field(default=200, ge=1, description="Most sources one audit may have.")
    max_source_chars: int = Field(default=20_000, ge=1, description="Most characters in one source's text.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
