"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with the matching status."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def not_found(message: str, code: str = "model_not_found") -> APIError:
    return APIError(404, message, code=code)


def overloaded(message: str) -> APIError:
    return APIError(429, message, type="rate_limit_error", code="rate_limit_exceeded")


def unauthorized() -> APIError:
    return APIError(401, "Incorrect API key provided.", type="invalid_request_error", code="invalid_api_key")


def server_error(message: str) -> APIError:
    return APIError(500, message, type="server_error")


def context_length_exceeded(window: int, prompt: int, reserve: int, param: str) -> APIError:
    """The conversation does not fit the model's context (OpenAI's code and wording, with our sizes)."""
    return APIError(
        400,
        f"This model's maximum context length is {window} tokens. However, your messages resulted in {prompt} "
        f"tokens, and {reserve} more are kept for the completion, so at most {window - reserve} fit. Please "
        "reduce the length of the messages, or (Responses API) set truncation to 'auto' to compact them.",
        param=param, code="context_length_exceeded",
    )
