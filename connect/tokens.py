"""Signed, short-lived join tokens: the data channel refuses anyone without one."""
from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer


@dataclass(frozen=True)
class JoinClaim:
    room_id: str
    user_id: str
    nonce: str


class JoinTokens:
    def __init__(self, secret: str, ttl: int):
        self._signer = URLSafeTimedSerializer(secret, salt="avatar-join")
        self.ttl = ttl

    def issue(self, room_id: str, user_id: str, nonce: str) -> str:
        return self._signer.dumps({"r": room_id, "u": user_id, "n": nonce})

    def verify(self, token: str, max_age: int | None = -1) -> JoinClaim | None:
        """The claim of a genuine token no older than `max_age` (the TTL by default, None: any age)."""
        try:
            data = self._signer.loads(token, max_age=self.ttl if max_age == -1 else max_age)
            return JoinClaim(data["r"], data["u"], data["n"])
        except (BadSignature, SignatureExpired, KeyError, TypeError):
            return None
