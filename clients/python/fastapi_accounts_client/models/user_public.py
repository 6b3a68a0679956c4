from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="UserPublic")


@_attrs_define
class UserPublic:
    """
    Attributes:
        created_at (datetime.datetime):
        email (str):
        id (UUID):
        is_active (bool):
        is_superuser (bool): Deprecated alias, kept one release: whether the account holds `admin`
        is_verified (bool):
        name (str):
        permissions (list[str]): Every permission those roles grant
        roles (list[str]): Names of the roles the account holds
        updated_at (datetime.datetime):
    """

    created_at: datetime.datetime
    email: str
    id: UUID
    is_active: bool
    is_superuser: bool
    is_verified: bool
    name: str
    permissions: list[str]
    roles: list[str]
    updated_at: datetime.datetime
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        created_at = self.created_at.isoformat()

        email = self.email

        id = str(self.id)

        is_active = self.is_active

        is_superuser = self.is_superuser

        is_verified = self.is_verified

        name = self.name

        permissions = self.permissions

        roles = self.roles

        updated_at = self.updated_at.isoformat()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "created_at": created_at,
                "email": email,
                "id": id,
                "is_active": is_active,
                "is_superuser": is_superuser,
                "is_verified": is_verified,
                "name": name,
                "permissions": permissions,
                "roles": roles,
                "updated_at": updated_at,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        email = d.pop("email")

        id = UUID(d.pop("id"))

        is_active = d.pop("is_active")

        is_superuser = d.pop("is_superuser")

        is_verified = d.pop("is_verified")

        name = d.pop("name")

        permissions = cast(list[str], d.pop("permissions"))

        roles = cast(list[str], d.pop("roles"))

        updated_at = datetime.datetime.fromisoformat(d.pop("updated_at"))

        user_public = cls(
            created_at=created_at,
            email=email,
            id=id,
            is_active=is_active,
            is_superuser=is_superuser,
            is_verified=is_verified,
            name=name,
            permissions=permissions,
            roles=roles,
            updated_at=updated_at,
        )

        user_public.additional_properties = d
        return user_public

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
