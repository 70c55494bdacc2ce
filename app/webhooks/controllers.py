"""A job's webhook deliveries: `GET /v1/jobs/{id}/webhooks` (with every attempt) and resending
one."""

from __future__ import annotations

from litestar import Controller, get, post

from app.keys.dependencies import KEY_DEPENDENCY
from app.platform.resources import Resources
from app.platform.tables import VirtualKey
from app.webhooks import service as webhooks
from app.webhooks.schemas import Delivery, DeliveryList


class WebhookDeliveryController(Controller):
    path = "/v1/jobs/{job_id:str}/webhooks"
    tags = ["jobs"]
    dependencies = KEY_DEPENDENCY

    @get("/", summary="The job's webhook deliveries, with every attempt")
    async def deliveries(self, job_id: str, key: VirtualKey, resources: Resources) -> DeliveryList:
        found = await webhooks.deliveries(resources, key.id, job_id)
        return DeliveryList(data=[Delivery.of(d) for d in found])

    @post("/{delivery_id:str}/resend", status_code=202, summary="Deliver a webhook again")
    async def resend(
        self, job_id: str, delivery_id: str, key: VirtualKey, resources: Resources
    ) -> Delivery:
        return Delivery.of(await webhooks.resend(resources, key.id, job_id, delivery_id))
