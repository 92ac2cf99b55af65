"""The endpoints: map a parsed request to a Reply, reading and changing the World."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

from watcherd.model import MetricFilter, parse_iso_ns
from watcherd.sim.http import Reply, Request, error_reply, json_reply
from watcherd.sim.world import CancelRefusedError, UnknownJobError, World

_JOB = re.compile(r"/v1/fine-tunes/(?P<id>[^/]+)(?P<sub>/metrics|/events|/checkpoints|/cancel)?")
_INT_FILTERS: Final = ("global_step_from", "global_step_to", "resolution")
_TIME_FILTERS: Final = ("logged_at_from", "logged_at_to")
WHOAMI: Final = {
    "type": "project_api_key",
    "api_key": {"id": "key_sim"},
    "organization": {"id": "org_sim", "name": "Simulator"},
    "project": {"id": "proj_sim", "name": "Simulator", "slug": "sim"},
}


class BadParamError(ValueError):
    """A request parameter that is not valid; `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(message)


def _filter_value(name: str, value: object) -> int:
    """One filter value as an int (nanoseconds for the time filters)."""
    if name in _TIME_FILTERS:
        if not isinstance(value, str):
            raise BadParamError(name, f"{name} must be an ISO-8601 date-time")
        try:
            return parse_iso_ns(value)
        except ValueError as exc:
            raise BadParamError(name, str(exc)) from None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    raise BadParamError(name, f"{name} must be an integer, not {value!r}")


def metric_filter(query: str, body: bytes) -> MetricFilter:
    """The filters from a JSON body (if any), overridden by the query string."""
    given: dict[str, object] = {}
    if body.strip():
        try:
            parsed = json.loads(body)
        except ValueError:
            raise BadParamError("body", "the request body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise BadParamError("body", "the request body must be a JSON object")
        given.update({k: v for k, v in parsed.items() if k in _INT_FILTERS + _TIME_FILTERS})
    given.update(dict(parse_qsl(query, keep_blank_values=True)))
    values = {
        name: _filter_value(name, given[name])
        for name in _INT_FILTERS + _TIME_FILTERS
        if given.get(name) is not None
    }
    try:
        return MetricFilter(**values)
    except ValueError as exc:
        raise BadParamError("resolution", str(exc)) from None


def _json_body(req: Request) -> Mapping[str, Any]:
    try:
        parsed = json.loads(req.body or b"{}")
    except ValueError:
        raise BadParamError("body", "the request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadParamError("body", "the request body must be a JSON object")
    return parsed


def _limits(query: str) -> dict[str, Any]:
    name = dict(parse_qsl(query)).get("model_name", "")
    batch = {"max_batch_size": 96, "max_batch_size_dpo": 48, "min_batch_size": 8}
    return {
        "model_name": name,
        "default_gradient_accumulation_steps": 1,
        "lora_training": batch
        | {"default_rank": 8, "max_rank": 64, "target_modules": ["all-linear"]},
        "full_training": batch,
        "max_learning_rate": 1.0,
        "min_learning_rate": 1e-8,
        "max_num_checkpoints": 20,
        "max_num_epochs": 20,
        "max_num_evals": 100,
        "max_seq_length_dpo": 8192,
        "max_seq_length_sft": 8192,
        "min_max_seq_length": 512,
        "merge_output_lora": True,
        "supports_full_training": True,
        "supports_reasoning": False,
        "supports_tools": True,
        "supports_vision": False,
    }


_ESTIMATE: Final = {
    "estimation_available": True,
    "allowed_to_proceed": True,
    "estimated_total_price": 0.25,
    "estimated_train_token_count": 819200.0,
    "estimated_eval_token_count": 0.0,
    "user_limit": 1000.0,
}


def _job_route(world: World, req: Request, job_id: str, sub: str) -> Reply:
    """The /v1/fine-tunes/{id}[/sub] endpoints."""
    get: dict[str, Callable[[], Any]] = {
        "": lambda: world.job_object(job_id),
        "/metrics": lambda: {"metrics": world.metrics(job_id, metric_filter(req.query, req.body))},
        "/events": lambda: {"data": world.events(job_id)},
        "/checkpoints": lambda: {"data": world.checkpoints(job_id)},
    }
    world.job(job_id)  # 404 before 405 for unknown IDs
    if sub == "/cancel":
        if req.method != "POST":
            return error_reply(405, "Method not allowed")
        try:
            return json_reply(200, world.cancel(job_id))
        except CancelRefusedError as exc:
            return error_reply(400, f"Fine-tune job cannot be cancelled: {exc}")
    if req.method != "GET":
        return error_reply(405, "Method not allowed")
    return json_reply(200, get[sub]())


def _collection(world: World, req: Request) -> Reply:
    """GET (list) and POST (create) on /v1/fine-tunes."""
    if req.method == "GET":
        return json_reply(200, {"data": world.list_objects()})
    if req.method != "POST":
        return error_reply(405, "Method not allowed")
    try:
        return json_reply(200, world.create(_json_body(req)))
    except BadParamError:
        raise
    except ValueError as exc:
        return error_reply(400, str(exc))


def route(world: World, req: Request) -> Reply:
    """The reply for an (authorized) request."""
    try:
        return _dispatch(world, req)
    except UnknownJobError as exc:
        return error_reply(404, f"Fine-tune job not found: {exc.args[0]}", param="id")
    except BadParamError as exc:
        return error_reply(400, str(exc), param=exc.param)


def _dispatch(world: World, req: Request) -> Reply:
    path = req.path.rstrip("/")
    if path in ("/v3/whoami", "/v1/whoami"):
        return json_reply(200, WHOAMI)
    if path == "/v1/fine-tunes":
        return _collection(world, req)
    if path == "/v1/fine-tunes/models/limits":
        return json_reply(200, _limits(req.query))
    if path == "/v1/fine-tunes/estimate-price" and req.method == "POST":
        return json_reply(200, _ESTIMATE)
    match = _JOB.fullmatch(path)
    if match:
        return _job_route(world, req, match["id"], match["sub"] or "")
    return error_reply(404, f"No route for {req.method} {req.path}")
