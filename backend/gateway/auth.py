"""The gateway's authentication interceptor.

It turns `authorization: Bearer <token>` into a username, or refuses the call
(UNAUTHENTICATED). Methods marked `(strife.v1.anonymous)` in the proto (Register,
Login) need no token. Handlers read the caller with `current_user()` and check
themselves that a request touches only the caller's own accounts.
"""

from __future__ import annotations

import contextvars

import grpc

from backend.api import strife_pb2 as pb
from backend.common.errors import Unauthenticated
from backend.common.interceptors import checked, method_options, note
from backend.gateway.sessions import SessionCache

_USER: contextvars.ContextVar[str] = contextvars.ContextVar("strife_user")
_TOKEN: contextvars.ContextVar[str] = contextvars.ContextVar("strife_token")

GATEWAY_METHODS = method_options(pb.DESCRIPTOR.services_by_name["Gateway"])
ANONYMOUS_METHODS = frozenset(
    name
    for name, options in GATEWAY_METHODS.items()
    if options.Extensions[pb.anonymous]  # type: ignore[index]  # protobuf's stubs miss extensions
)
MAX_TOKEN_CHARS = 128


def current_user() -> str:
    return _USER.get()


def current_token() -> str:
    return _TOKEN.get()


def _bearer(context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return None


class AuthenticationInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, sessions: SessionCache) -> None:
        self.sessions = sessions

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if details.method not in GATEWAY_METHODS or details.method in ANONYMOUS_METHODS:
            return handler

        async def check(request, context) -> None:
            token = _bearer(context)
            if not token:
                raise Unauthenticated("missing token: log in first", reason=pb.Errors.TOKEN_MISSING)
            username = None
            if len(token) <= MAX_TOKEN_CHARS:
                username = await self.sessions.user_for(token)
            if username is None:
                raise Unauthenticated("invalid, expired or revoked token: log in again")
            note(user=username)
            _USER.set(username)
            _TOKEN.set(token)

        return checked(handler, check)
