"""Typed errors of the gateway, each mapped to one Anthropic error type and HTTP status.

Routes never build error bodies by hand: they raise one of these and the app's exception
handler renders `{"type": "error", "error": {"type": ..., "message": ...}}`.
"""

from __future__ import annotations

import json


class GatewayError(Exception):
    status: int = 500
    error_type: str = "api_error"
    # True when tenancy policy or quota refused a caller the authorizer let in: the audit outcome is
    # "denied", not "error", whatever the status (RequestEnd reads this, never the message).
    policy_refusal: bool = False

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"type": "error", "error": {"type": self.error_type, "message": self.message}}

    def body_bytes(self) -> bytes:
        return json.dumps(self.body(), separators=(",", ":")).encode()


class InvalidRequestError(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class AuthenticationError(GatewayError):
    status = 401
    error_type = "authentication_error"


class PermissionDeniedError(GatewayError):
    status = 403
    error_type = "permission_error"
    policy_refusal = True


class NotFoundError(GatewayError):
    status = 404
    error_type = "not_found_error"


class RequestTooLargeError(GatewayError):
    status = 413
    error_type = "request_too_large"


class RateLimitError(GatewayError):
    status = 429
    error_type = "rate_limit_error"
    policy_refusal = True

    def __init__(self, message: str, *, retry_after: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers={**(headers or {}), "retry-after": str(max(1, int(retry_after)))})
        self.retry_after = retry_after


class QuotaContentionError(RateLimitError):
    """A 429 because concurrent requests kept conflicting on the quota items, not because a limit was
    reached: audited as `error` (contention), not `denied`."""

    policy_refusal = False


class PolicyLimitError(InvalidRequestError):
    """A 400 for a request above a limit the tenant set (max_tokens_per_request): a policy refusal."""

    policy_refusal = True


class UnavailableInResidencyError(NotFoundError):
    """A 404 for a known model that the tenant's data residency does not serve: a policy refusal."""

    policy_refusal = True


class ClientGoneError(GatewayError):
    """The client left before the request was complete (mid-body): nothing can be answered, but the
    attempt is audited, under its tenant, as a disconnection. 499 is for the record only."""

    status = 499
    error_type = "client_disconnected"


class ApiError(GatewayError):
    status = 500
    error_type = "api_error"


class ServiceUnavailableError(GatewayError):
    """The gateway cannot meet its guarantees (for example the audit write failed): nothing was called."""

    status = 503
    error_type = "api_error"


class OverloadedError(GatewayError):
    status = 529
    error_type = "overloaded_error"


class UpstreamError(GatewayError):
    """An error answered by the model provider that is passed on to the caller as it came."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


# The Anthropic error type for each HTTP status, for upstream answers that carry no usable type.
ERROR_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
