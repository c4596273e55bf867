"""The flows of the host itself: its hardware (``/1.0/resources``) and its
metrics (``/1.0/metrics``), the same on every driver."""

from __future__ import annotations

from typing import Any

from cove.client.drivers._steps import Flow, GetMetrics, GetResources
from cove.model.errors import BadRequest, InternalError

__all__ = ["metrics", "resources"]


def resources() -> Flow[dict[str, Any]]:
    found = yield GetResources()
    if not isinstance(found, dict):
        raise InternalError("resources: the host sent no object")
    return found


def metrics(project: str | None = None) -> Flow[str]:
    if project is not None and (not isinstance(project, str) or not project):
        raise BadRequest("The project must be a non-empty string")
    text = yield GetMetrics(project)
    if not isinstance(text, str):
        raise InternalError("metrics: the host sent no text")
    return text
