"""Authentication and authorization interceptors of the gateway.

Authentication turns `authorization: Bearer <token>` into a username (or
UNAUTHENTICATED); authorization checks that the caller touches only its own
accounts (or PERMISSION_DENIED). Handlers read the caller with `current_user()`.
"""

from __future__ import annotations

import contextvars

import grpc

from backend.common import limits
from backend.common.interceptors import note, wrap_unary
from backend.gateway.links import LinkCache
from backend.gateway.sessions import SessionCache

_USER: contextvars.ContextVar[str] = contextvars.ContextVar("strife_user")
_TOKEN: contextvars.ContextVar[str] = contextvars.ContextVar("strife_token")

_GATEWAY = "/strife.v1.Gateway/"
PUBLIC_METHODS = frozenset({_GATEWAY + "Register", _GATEWAY + "Login"})
MAX_TOKEN_CHARS = 128


def current_user() -> str:
    return _USER.get()


def current_token() -> str:
    return _TOKEN.get()


def _bearer(context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    return None


class AuthenticationInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, sessions: SessionCache) -> None:
        self.sessions = sessions

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if not details.method.startswith(_GATEWAY) or details.method in PUBLIC_METHODS:
            return handler

        def make(inner):
            async def behavior(request, context):
                token = _bearer(context)
                if not token:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing token: log in first")
                username = None
                if len(token) <= MAX_TOKEN_CHARS:
                    username = await self.sessions.user_for(token)
                if username is None:
                    await context.abort(
                        grpc.StatusCode.UNAUTHENTICATED, "invalid, expired or revoked token: log in again"
                    )
                note(user=username)
                _USER.set(username)
                _TOKEN.set(token)
                return await inner(request, context)

            return behavior

        return wrap_unary(handler, make)


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):
    """A client pays only from an account linked to it. Reads are scoped to the
    caller by the handlers themselves (they never take another user's name)."""

    def __init__(self, links: LinkCache) -> None:
        self.links = links

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if details.method != _GATEWAY + "Pay":
            return handler

        def make(inner):
            async def behavior(request, context):
                source = getattr(request, "from")
                if source.bank or source.account_id:
                    try:  # malformed first: never echo an unbounded string in the refusal
                        limits.bank(source.bank)
                        limits.account(source.account_id)
                    except limits.InvalidInput as exc:
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"from: {exc}")
                    user = current_user()
                    if (source.bank, source.account_id) not in await self.links.of(user):
                        await context.abort(
                            grpc.StatusCode.PERMISSION_DENIED,
                            f"you can pay only from your own accounts; {source.account_id} at {source.bank} is not yours",
                        )
                return await inner(request, context)

            return behavior

        return wrap_unary(handler, make)
