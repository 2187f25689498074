from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Reason = Literal["hard_bounce", "complaint", "manual"]


class SuppressionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(max_length=320, description="The address Outbox must no longer send to")
    detail: str | None = Field(default=None, max_length=1000, description="Why (shown in the list)")
    message_id: int | None = Field(default=None, ge=1, le=2**63 - 1, description="The message that caused it")


class SuppressionPublic(BaseModel):
    id: int
    address: str
    reason: Reason = Field(description="hard_bounce: a delivery status notification said the address does not "
                                       "exist or refuses mail for good; complaint: the recipient marked a message "
                                       "as spam or fraud (a feedback-loop report); manual: added through the API")
    detail: str | None
    message_id: int | None = Field(description="The message whose bounce or complaint caused it")
    created_at: datetime
