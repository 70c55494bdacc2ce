"""The shapes of a job's webhook deliveries."""

from __future__ import annotations

from typing import Literal

from app.http.schemas import ListModel, ResponseModel
from app.platform.tables import WebhookDelivery, iso
from app.platform.vocabulary import DeliveryStatus


class DeliveryAttempt(ResponseModel):
    at: str
    status_code: int | None
    latency_ms: int | None
    error: str | None = None


class Delivery(ResponseModel):
    id: str
    object: Literal["webhook_delivery"] = "webhook_delivery"
    job_id: str
    event: str
    url: str
    status: DeliveryStatus
    attempts: list[DeliveryAttempt]
    created_at: str
    delivered_at: str | None

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> Delivery:
        return Delivery(
            id=delivery.id,
            job_id=delivery.job_id,
            event=delivery.event,
            url=delivery.url,
            status=delivery.status,
            attempts=[DeliveryAttempt.model_validate(a) for a in delivery.attempts],
            created_at=iso(delivery.created_at) or "",
            delivered_at=iso(delivery.delivered_at),
        )


class DeliveryList(ListModel):
    data: list[Delivery]
