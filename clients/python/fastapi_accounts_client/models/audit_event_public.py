from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.audit_event_public_details import AuditEventPublicDetails


T = TypeVar("T", bound="AuditEventPublic")


@_attrs_define
class AuditEventPublic:
    """
    Attributes:
        actor_id (None | UUID): The account that acted; null: nobody signed in (a failed sign-in, a replayed token), a
            job or a command
        client_ip (None | str): The client's address (through the trusted proxies); null outside a request
        created_at (datetime.datetime): When it happened (UTC)
        details (AuditEventPublicDetails): What else the event says; never a secret, password, hash or token
        id (UUID):
        subject_id (None | UUID): The account it concerns, if any
        type_ (str): What happened: `<feature>.<event>`, e.g. `auth.signed_in`
        user_agent (None | str): The client's User-Agent, at most 256 characters
    """

    actor_id: None | UUID
    client_ip: None | str
    created_at: datetime.datetime
    details: AuditEventPublicDetails
    id: UUID
    subject_id: None | UUID
    type_: str
    user_agent: None | str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        actor_id: None | str
        if isinstance(self.actor_id, UUID):
            actor_id = str(self.actor_id)
        else:
            actor_id = self.actor_id

        client_ip: None | str
        client_ip = self.client_ip

        created_at = self.created_at.isoformat()

        details = self.details.to_dict()

        id = str(self.id)

        subject_id: None | str
        if isinstance(self.subject_id, UUID):
            subject_id = str(self.subject_id)
        else:
            subject_id = self.subject_id

        type_ = self.type_

        user_agent: None | str
        user_agent = self.user_agent

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "actor_id": actor_id,
                "client_ip": client_ip,
                "created_at": created_at,
                "details": details,
                "id": id,
                "subject_id": subject_id,
                "type": type_,
                "user_agent": user_agent,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.audit_event_public_details import AuditEventPublicDetails  # noqa: PLC0415

        d = dict(src_dict)

        def _parse_actor_id(data: object) -> None | UUID:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                actor_id_type_0 = UUID(data)

                return actor_id_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UUID, data)

        actor_id = _parse_actor_id(d.pop("actor_id"))

        def _parse_client_ip(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        client_ip = _parse_client_ip(d.pop("client_ip"))

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        details = AuditEventPublicDetails.from_dict(d.pop("details"))

        id = UUID(d.pop("id"))

        def _parse_subject_id(data: object) -> None | UUID:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                subject_id_type_0 = UUID(data)

                return subject_id_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | UUID, data)

        subject_id = _parse_subject_id(d.pop("subject_id"))

        type_ = d.pop("type")

        def _parse_user_agent(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        user_agent = _parse_user_agent(d.pop("user_agent"))

        audit_event_public = cls(
            actor_id=actor_id,
            client_ip=client_ip,
            created_at=created_at,
            details=details,
            id=id,
            subject_id=subject_id,
            type_=type_,
            user_agent=user_agent,
        )

        audit_event_public.additional_properties = d
        return audit_event_public

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
