from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar, cast
from uuid import UUID

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="RolePublic")


@_attrs_define
class RolePublic:
    """
    Attributes:
        built_in (bool):
        created_at (datetime.datetime):
        description (str):
        grants_all (bool): Every permission, present and future (admin)
        id (UUID):
        name (str):
        permissions (list[str]): What the role grants now (admin: everything)
        updated_at (datetime.datetime):
    """

    built_in: bool
    created_at: datetime.datetime
    description: str
    grants_all: bool
    id: UUID
    name: str
    permissions: list[str]
    updated_at: datetime.datetime
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        built_in = self.built_in

        created_at = self.created_at.isoformat()

        description = self.description

        grants_all = self.grants_all

        id = str(self.id)

        name = self.name

        permissions = self.permissions

        updated_at = self.updated_at.isoformat()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "built_in": built_in,
                "created_at": created_at,
                "description": description,
                "grants_all": grants_all,
                "id": id,
                "name": name,
                "permissions": permissions,
                "updated_at": updated_at,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        built_in = d.pop("built_in")

        created_at = datetime.datetime.fromisoformat(d.pop("created_at"))

        description = d.pop("description")

        grants_all = d.pop("grants_all")

        id = UUID(d.pop("id"))

        name = d.pop("name")

        permissions = cast(list[str], d.pop("permissions"))

        updated_at = datetime.datetime.fromisoformat(d.pop("updated_at"))

        role_public = cls(
            built_in=built_in,
            created_at=created_at,
            description=description,
            grants_all=grants_all,
            id=id,
            name=name,
            permissions=permissions,
            updated_at=updated_at,
        )

        role_public.additional_properties = d
        return role_public

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
