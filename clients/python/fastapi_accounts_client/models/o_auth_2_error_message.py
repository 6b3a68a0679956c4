from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="OAuth2ErrorMessage")


@_attrs_define
class OAuth2ErrorMessage:
    """An error of the token endpoint: `detail` as everywhere, and RFC 6749's fields.

    Attributes:
        detail (str):
        error (str): RFC 6749 section 5.2 code, e.g. `invalid_grant`
        error_description (str):
    """

    detail: str
    error: str
    error_description: str
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        detail = self.detail

        error = self.error

        error_description = self.error_description

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "detail": detail,
                "error": error,
                "error_description": error_description,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        detail = d.pop("detail")

        error = d.pop("error")

        error_description = d.pop("error_description")

        o_auth_2_error_message = cls(
            detail=detail,
            error=error,
            error_description=error_description,
        )

        o_auth_2_error_message.additional_properties = d
        return o_auth_2_error_message

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
