"""Every table, imported here so metadata is complete wherever models are used."""

from app.models.api_key import ApiKey
from app.models.message import Attempt, Message, MessageAttachment
from app.models.parameters import Parameters
from app.models.provider import ProviderConfig
from app.models.user import User

__all__ = ["ApiKey", "Attempt", "Message", "MessageAttachment", "Parameters", "ProviderConfig", "User"]
