from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.core.deps import SettingsDep, TxDep
from app.core.errors import problem_responses
from app.core.pagination import DbId, Limit, Offset, Page
from app.users.auth import ServiceOrAdminDep
from app.webhooks import jobs, service
from app.webhooks.schemas import (
    DeliveryPublic,
    DeliveryState,
    RotateSecretIn,
    SecretRotated,
    TestResult,
    WebhookCreated,
    WebhookIn,
    WebhookPublic,
    WebhookUpdate,
    WebhookUpdated,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=problem_responses(401, 403, 422))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated,
             summary="Add a webhook endpoint")
async def create_webhook(body: WebhookIn, tx: TxDep, principal: ServiceOrAdminDep,
                         settings: SettingsDep) -> WebhookCreated:
    """The response holds the signing secret, once. A service key's endpoint receives the events of that
    key's messages only; an administrator's receives every message's."""
    return await service.create(tx.session, principal, body, settings)


@router.get("", response_model=Page[WebhookPublic], summary="Webhook endpoints")
async def list_webhooks(tx: TxDep, principal: ServiceOrAdminDep, limit: Limit = 50,
                        offset: Offset = 0) -> Page[WebhookPublic]:
    return await service.list_endpoints(tx.session, principal, limit, offset)


@router.get("/{webhook_id}", response_model=WebhookPublic, responses=problem_responses(404),
            summary="One webhook endpoint")
async def get_webhook(webhook_id: DbId, tx: TxDep, principal: ServiceOrAdminDep) -> WebhookPublic:
    return await service.get(tx.session, principal, webhook_id)


@router.patch("/{webhook_id}", response_model=WebhookUpdated, responses=problem_responses(404),
              summary="Change a webhook endpoint; re-enable it (replays what it missed)")
async def update_webhook(webhook_id: DbId, body: WebhookUpdate, tx: TxDep, principal: ServiceOrAdminDep,
                         settings: SettingsDep) -> WebhookUpdated:
    """Only the fields sent change. `enabled: true` on a disabled endpoint queues again every event it has not
    received (pending or given up), each with a fresh retry window."""
    result = await service.update_endpoint(tx.session, principal, webhook_id, body, settings)
    if result.replayed:
        tx.enqueue_after_commit(jobs.DELIVER, _job_id=f"webhooks:replay:{webhook_id}")
    return result


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses=problem_responses(404), summary="Delete a webhook endpoint")
async def delete_webhook(webhook_id: DbId, tx: TxDep, principal: ServiceOrAdminDep) -> Response:
    await service.delete_endpoint(tx.session, principal, webhook_id)
    return Response(status_code=204)


@router.post("/{webhook_id}/secret", response_model=SecretRotated, responses=problem_responses(404),
             summary="Rotate the signing secret")
async def rotate_webhook_secret(webhook_id: DbId, tx: TxDep, principal: ServiceOrAdminDep, settings: SettingsDep,
                                body: RotateSecretIn | None = None) -> SecretRotated:
    """The new secret is shown once. During `overlap_seconds` (default one day) every delivery carries two
    signatures (`webhook-signature: v1,<new> v1,<old>`), so receivers can switch without losing any."""
    return await service.rotate_secret(tx.session, principal, webhook_id, body or RotateSecretIn(), settings)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryPublic], responses=problem_responses(404),
            summary="Delivery log of one endpoint")
async def list_deliveries(webhook_id: DbId, tx: TxDep, principal: ServiceOrAdminDep,
                          state: DeliveryState | None = None, limit: Limit = 50,
                          offset: Offset = 0) -> Page[DeliveryPublic]:
    """Newest first: each event, its attempts, the receiver's last answer and when it is tried next."""
    return await service.deliveries(tx.session, principal, webhook_id, state, limit, offset)


@router.post("/{webhook_id}/test", response_model=TestResult, responses=problem_responses(404),
             summary="Send a signed test event now")
async def test_webhook(webhook_id: DbId, tx: TxDep, principal: ServiceOrAdminDep,
                       settings: SettingsDep) -> TestResult:
    """Posts a `webhook.test` event to the endpoint at once (enabled or not) and answers what the receiver
    said; it is logged with the endpoint's deliveries."""
    return await service.test(tx.session, principal, webhook_id, settings)
