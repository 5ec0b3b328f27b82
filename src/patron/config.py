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
    # Outgoing mail (the campaigns outbox): the SMTP relay and the sender.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 30
    mail_from: str = "Patron <noreply@localhost>"
    # Temporary failures (4xx, connection errors) are retried with exponential backoff
    # (first retry after mail_retry_seconds) up to mail_max_attempts sends in all.
    mail_max_attempts: int = 6
    mail_retry_seconds: int = 300
    # A message claimed longer ago than this (a crashed run) is claimed again.
    mail_lease_seconds: int = 600
    # The delivery loop of `patron worker` / `patron serve` (mail and channel webhooks).
    delivery_interval_seconds: float = 15
    webhook_timeout_seconds: float = 10


@lru_cache
def get_settings() -> Settings:
    return Settings()
