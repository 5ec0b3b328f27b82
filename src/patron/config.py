"""Settings, read from the environment (prefix ``PATRON_``) or a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATRON_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./patron.db"
    host: str = "127.0.0.1"
    port: int = 8000
    # Records per bulk call: large enough for fast back-fills, small enough to bound a request.
    bulk_max_records: int = 10_000
    member_token_ttl_seconds: int = 900
    # Where share links point (`{base}/r/{code}`); default: the API's own base URL.
    referral_base_url: str | None = None
    # Where survey links point (`{base}/s/{store}/{token}`); default: the API's base URL.
    survey_base_url: str | None = None
    sql_echo: bool = False


@lru_cache
def get_settings() -> Settings:
    return Settings()
