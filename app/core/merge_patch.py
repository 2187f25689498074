"""JSON merge patch (RFC 7396) for settings resources: PATCH changes the fields it names and keeps the others.

A member with a value replaces the stored one; a member set to null removes it, which for a field that may be
null stores null and for any other field is refused (422 naming it), since the resource cannot be without it.
The merged result is validated as a whole, exactly as PUT validates its body.
"""

from __future__ import annotations

from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic.fields import FieldInfo

from app.core.errors import InvalidInput, jsonable_errors, validation_detail

MEDIA_TYPE = "application/merge-patch+json"
M = TypeVar("M", bound=BaseModel)


def merge(target: Any, patch: Any) -> Any:
    """RFC 7396 section 2, MergePatch(Target, Patch)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def patch_model(model: type[BaseModel], name: str, *, doc: str, examples: list[dict[str, Any]]) -> type[BaseModel]:
    """The PATCH body of `model`: every field optional, same types, constraints and descriptions."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        copy = FieldInfo.merge_field_infos(info)
        copy.default, copy.default_factory = None, None  # left out means kept, not defaulted
        fields[field_name] = (info.annotation | None, copy)  # type: ignore[operator]

    def schema_extra(schema: dict[str, Any]) -> None:
        # Nothing is defaulted in a patch: a field left out keeps its stored value.
        for prop in schema.get("properties", {}).values():
            prop.pop("default", None)
        schema["examples"] = examples

    config = ConfigDict(extra="forbid", json_schema_extra=schema_extra, title=name)
    patch: type[BaseModel] = create_model(name, __config__=config, __doc__=doc, **fields)
    return patch


def apply(model: type[M], current: dict[str, Any], given: BaseModel, *, write_only: frozenset[str] = frozenset()
          ) -> M:
    """Merge the fields `given` sets into `current` (the stored representation) and validate the result as
    `model`. Write-only fields (secrets) are passed as given: left out keeps the stored secret, null clears it."""
    body = given.model_dump(exclude_unset=True)
    secrets = {k: v for k, v in body.items() if k in write_only}
    plain = {k: v for k, v in body.items() if k not in write_only}
    refused = [k for k, v in plain.items() if v is None and not _may_be_null(model, k)]
    if refused:
        raise InvalidInput(f"{refused[0]}: may not be null; give a value, or leave it out to keep the stored one",
                           errors=[{"field": k, "message": "may not be null"} for k in refused])
    merged = merge({k: v for k, v in current.items() if v is not None}, plain)
    for key, value in plain.items():
        if value is None:
            merged[key] = None
    for key, value in current.items():
        if value is None and key not in plain and _may_be_null(model, key):
            merged[key] = None
    try:
        return model.model_validate({**merged, **secrets})
    except ValidationError as exc:
        errors = jsonable_errors(exc.errors())
        raise InvalidInput(validation_detail(errors) or "invalid settings", errors=errors) from exc


def _may_be_null(model: type[BaseModel], key: str) -> bool:
    info = model.model_fields.get(key)
    return info is not None and (info.annotation is None or type(None) in get_args(info.annotation))
