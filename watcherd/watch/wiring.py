"""The API client the daemon and `wait` both build from a config, and its saved pause."""

from __future__ import annotations

import httpx
import structlog

from watcherd.api.client import ApiClient
from watcherd.api.limits import HostGate
from watcherd.api.sharedpause import SharedPause
from watcherd.config import Config
from watcherd.errors import ConfigError
from watcherd.store.interface import StoreApi

log = structlog.get_logger("watcherd.api")


def build_api(
    http: httpx.AsyncClient, config: Config, *, gate: HostGate | None = None
) -> ApiClient:
    """An API client for this config (holding `gate`, if given); reads the API key now.

    A missing or unusable key is a ConfigError naming the config file and `api.api_key`.
    """
    try:
        key = config.api.api_key.resolve()
    except ConfigError as exc:
        if exc.key:
            raise
        source = str(config.source) if config.source else None
        if config.source is not None and not config.source.exists():  # defaults were used
            source = f"defaults (no {config.source})"
        hint = "set it, or name another source with api_key_env / api_key_file"
        raise ConfigError(f"{exc.message}; {hint}", path=source, key="api.api_key") from exc
    return ApiClient.from_config(http, config.api, key, gate=gate)


def api_host(config: Config) -> str:
    """The host every API request goes to: pauses are kept per host."""
    return httpx.URL(config.api.base_url).host


def saved_gate(store: StoreApi, host: str, *, shared: bool = False) -> HostGate:
    """A host gate that saves each pause of `host` in `store` before requests go on;
    `shared` (daemons on one database): each request first reads the stored pause."""

    async def save(until: float) -> None:
        await store.set_host_pause(host, until)

    async def read() -> float | None:
        return (await store.host_pauses()).get(host)

    return HostGate(save=save, shared=SharedPause(read) if shared else None)


async def restore_pause(gate: HostGate, store: StoreApi, config: Config, now: float) -> None:
    """Take the stored pause of the config's host (start-up, reload), cut to the cap.

    A pause `watcherd resume` cleared is dropped; one longer than `api.max_retry_after`
    from `now` (stored by an older watcherd, or before the cap was lowered) is cut.
    """
    host = api_host(config)
    stored = (await store.host_pauses()).get(host)
    until = await gate.adopt(stored, cap=config.api.max_retry_after)
    if stored is not None and until < stored and stored > now:
        log.warning("api.retry_after_capped", host=host, stored=stored, capped_to=until)
    if until > now:
        log.info("api.pause_restored", host=host, until=until, seconds=round(until - now, 1))
