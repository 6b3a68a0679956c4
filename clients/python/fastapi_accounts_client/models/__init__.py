"""Contains all the data models used in inputs/outputs"""

from .accepted import Accepted
from .api_key_create import ApiKeyCreate
from .api_key_created import ApiKeyCreated
from .api_key_public import ApiKeyPublic
from .audit_event_public import AuditEventPublic
from .audit_event_public_details import AuditEventPublicDetails
from .audit_events_public import AuditEventsPublic
from .authorization_url import AuthorizationUrl
from .code_exchange import CodeExchange
from .email_request import EmailRequest
from .email_restore import EmailRestore
from .email_verification import EmailVerification
from .error_message import ErrorMessage
from .health_status import HealthStatus
from .http_validation_error import HTTPValidationError
from .identity_public import IdentityPublic
from .link_request import LinkRequest
from .login_form import LoginForm
from .login_form_grant_type import LoginFormGrantType
from .o_auth_2_error_message import OAuth2ErrorMessage
from .o_auth_2_validation_error import OAuth2ValidationError
from .oidc_provider_public import OidcProviderPublic
from .password_change import PasswordChange
from .password_reset import PasswordReset
from .permission_public import PermissionPublic
from .readiness_status import ReadinessStatus
from .refresh_request import RefreshRequest
from .role_assignment import RoleAssignment
from .role_create import RoleCreate
from .role_public import RolePublic
from .role_update import RoleUpdate
from .session_public import SessionPublic
from .token_pair import TokenPair
from .user_create import UserCreate
from .user_public import UserPublic
from .user_register import UserRegister
from .user_update import UserUpdate
from .user_update_me import UserUpdateMe
from .users_public import UsersPublic
from .validation_error import ValidationError
from .validation_error_context import ValidationErrorContext
from .validation_issue import ValidationIssue

__all__ = (
    "Accepted",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyPublic",
    "AuditEventPublic",
    "AuditEventPublicDetails",
    "AuditEventsPublic",
    "AuthorizationUrl",
    "CodeExchange",
    "EmailRequest",
    "EmailRestore",
    "EmailVerification",
    "ErrorMessage",
    "HealthStatus",
    "HTTPValidationError",
    "IdentityPublic",
    "LinkRequest",
    "LoginForm",
    "LoginFormGrantType",
    "OAuth2ErrorMessage",
    "OAuth2ValidationError",
    "OidcProviderPublic",
    "PasswordChange",
    "PasswordReset",
    "PermissionPublic",
    "ReadinessStatus",
    "RefreshRequest",
    "RoleAssignment",
    "RoleCreate",
    "RolePublic",
    "RoleUpdate",
    "SessionPublic",
    "TokenPair",
    "UserCreate",
    "UserPublic",
    "UserRegister",
    "UsersPublic",
    "UserUpdate",
    "UserUpdateMe",
    "ValidationError",
    "ValidationErrorContext",
    "ValidationIssue",
)
