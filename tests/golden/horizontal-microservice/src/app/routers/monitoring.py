"""Prometheus metrics of the whole service (all of its workers)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from src.app import metrics

router = APIRouter(tags=["monitoring"])


@router.get(
    "/metrics",
    summary="Prometheus metrics: requests, latencies, the model served",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text exposition"}},
    response_class=Response,
)
async def prometheus_metrics() -> Response:
    """Requests by route and status, request and inference latency, and the model's identity."""
    return Response(metrics.generate_latest(), media_type=CONTENT_TYPE_LATEST)
