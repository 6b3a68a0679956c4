from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.login_form_grant_type import LoginFormGrantType
from ..types import UNSET, Unset

T = TypeVar("T", bound="LoginForm")


@_attrs_define
class LoginForm:
    """
    Attributes:
        client_id (str | Unset):
        client_secret (str | Unset):
        grant_type (LoginFormGrantType | Unset): `password` (the default) signs in; `refresh_token` trades a refresh
            token
        password (str | Unset): Password grant
        refresh_token (str | Unset): Refresh grant: the refresh token to trade
        scope (str | Unset): Space-separated scopes; none are used Default: ''.
        username (str | Unset): The account's email address (password grant)
    """

    client_id: str | Unset = UNSET
    client_secret: str | Unset = UNSET
    grant_type: LoginFormGrantType | Unset = UNSET
    password: str | Unset = UNSET
    refresh_token: str | Unset = UNSET
    scope: str | Unset = ""
    username: str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        client_id = self.client_id

        client_secret = self.client_secret

        grant_type: str | Unset = UNSET
        if not isinstance(self.grant_type, Unset):
            grant_type = self.grant_type.value

        password = self.password

        refresh_token = self.refresh_token

        scope = self.scope

        username = self.username

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if client_id is not UNSET:
            field_dict["client_id"] = client_id
        if client_secret is not UNSET:
            field_dict["client_secret"] = client_secret
        if grant_type is not UNSET:
            field_dict["grant_type"] = grant_type
        if password is not UNSET:
            field_dict["password"] = password
        if refresh_token is not UNSET:
            field_dict["refresh_token"] = refresh_token
        if scope is not UNSET:
            field_dict["scope"] = scope
        if username is not UNSET:
            field_dict["username"] = username

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        client_id = d.pop("client_id", UNSET)

        client_secret = d.pop("client_secret", UNSET)

        _grant_type = d.pop("grant_type", UNSET)
        grant_type: LoginFormGrantType | Unset
        if isinstance(_grant_type, Unset):
            grant_type = UNSET
        else:
            grant_type = LoginFormGrantType(_grant_type)

        password = d.pop("password", UNSET)

        refresh_token = d.pop("refresh_token", UNSET)

        scope = d.pop("scope", UNSET)

        username = d.pop("username", UNSET)

        login_form = cls(
            client_id=client_id,
            client_secret=client_secret,
            grant_type=grant_type,
            password=password,
            refresh_token=refresh_token,
            scope=scope,
            username=username,
        )

        login_form.additional_properties = d
        return login_form

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
