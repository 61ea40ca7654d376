"""The command's side of the HTTP API: where it is, with which key, and its
errors as the command reports them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_KEY = "sk_test_demo"
DEFAULT_OPERATOR_KEY = "sk_test_operator"


class CommandError(Exception):
    """What ends a command with exit code 1, its message on stderr."""


@dataclass(frozen=True)
class Api:
    url: str
    key: str
    operator_key: str

    @classmethod
    def from_env(cls) -> Api:
        return cls(
            url=os.environ.get("PAYMENTS_API_URL", DEFAULT_URL).rstrip("/"),
            key=os.environ.get("PAYMENTS_API_KEY", DEFAULT_KEY),
            operator_key=os.environ.get("PAYMENTS_OPERATOR_KEY", DEFAULT_OPERATOR_KEY),
        )

    def client(self, *, operator: bool = False, timeout: float = 75.0) -> httpx.Client:
        key = self.operator_key if operator else self.key
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        operator: bool = False,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The answer's JSON; :class:`CommandError` for an error answer or no answer."""
        try:
            with self.client(operator=operator) as http:
                response = http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as err:
            raise CommandError(f"cannot reach the API at {self.url}: {err}") from None
        return answer(response)


def answer(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        return body
    error = body.get("error", {}) if isinstance(body, dict) else {}
    message = error.get("message") or response.reason_phrase
    code = error.get("code")
    raise CommandError(f"{message} ({response.status_code} {code})" if code else message)
