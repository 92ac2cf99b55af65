"""The API client the daemon and `wait` both build from a config."""

from __future__ import annotations

import httpx

from watcherd.api.client import ApiClient
from watcherd.config import Config
from watcherd.errors import ConfigError


def build_api(http: httpx.AsyncClient, config: Config) -> ApiClient:
    """An API client for this config; reads the API key now.

    A missing or unusable key is a ConfigError naming the config file and `api.api_key`.
    """
    try:
        key = config.api.api_key.resolve()
    except ConfigError as exc:
        if exc.key:
            raise
        source = str(config.source) if config.source else None
        hint = "set it, or name another source with api_key_env / api_key_file"
        raise ConfigError(f"{exc.message}; {hint}", path=source, key="api.api_key") from exc
    return ApiClient.from_config(http, config.api, key)
