"""Join tokens: JWTs (HS256, the algorithm list fixed) that the data channel and the WebRTC offer require.

`POST /api/meeting/join` issues one for the place it reserves; an application's own backend can mint one with
the shared secret (docs/TOKENS.md) and skip that call: the place is then reserved when the token is first used.
Claims: `aud` (JOIN_TOKEN_AUDIENCE), `exp`, `nbf`, `iat`, `jti` (single use), `room`, `sub` (the user id) and
optionally `name` (the display name).
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import jwt

ALGORITHMS = ["HS256"]                    # fixed: never taken from the token's header (no "none", no RS/HS mix-up)
REQUIRED = ["exp", "nbf", "iat", "aud", "jti", "sub"]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TokenError(Exception):
    """A token that cannot be used; `message` says why in words a developer can act on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class JoinClaim:
    room_id: str
    user_id: str
    jti: str                              # also the nonce of the reservation it stands for
    display_name: str | None
    expires_at: float


class JoinTokens:
    def __init__(self, secret: str, ttl: int, audience: str = "avatar-meeting", leeway: float = 0.0, spent=None):
        """`spent`: where used tokens are remembered (SpentTokens in this process; with Redis, shared by all)."""
        if not secret:
            raise ValueError("join tokens need a secret")
        self._secret, self.ttl, self.audience, self.leeway = secret, ttl, audience, leeway
        self._spent = spent or SpentTokens()

    def issue(self, room_id: str, user_id: str, jti: str, display_name: str | None = None, ttl: int | None = None) -> str:
        now = int(time.time())
        claims = {"aud": self.audience, "iat": now, "nbf": now, "exp": now + (ttl or self.ttl), "jti": jti, "room": room_id,
                  "sub": user_id}
        if display_name is not None:
            claims["name"] = display_name
        return jwt.encode(claims, self._secret, algorithm=ALGORITHMS[0])

    def verify(self, token: str, room_id: str, check_expiry: bool = True, unspent: bool = True) -> JoinClaim:
        """The claim of a genuine token for `room_id`; raises TokenError. With `unspent`, a token already used
        to join is refused; without `check_expiry`, an expired one is accepted (to leave with it)."""
        if not isinstance(token, str) or not token:
            raise TokenError("missing join token")
        try:
            data = jwt.decode(token, self._secret, algorithms=ALGORITHMS, audience=self.audience, leeway=self.leeway,
                              options={"require": REQUIRED, "verify_exp": check_expiry})
        except jwt.ExpiredSignatureError:
            raise TokenError("the join token has expired: join again") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("the join token is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise TokenError(f"the join token is not for this server (aud must be {self.audience!r})") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"the join token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise TokenError("forged or malformed join token") from None
        room, user, jti, name = data.get("room"), data.get("sub"), data.get("jti"), data.get("name")
        if not all(isinstance(v, str) and v for v in (room, user, jti)) or not isinstance(name, (str, type(None))):
            raise TokenError("the join token's room, sub, jti and name claims must be strings")
        if name is not None and (not 1 <= len(name.strip()) <= 64 or _CONTROL.search(name)):
            raise TokenError("the join token's name claim must be 1-64 printable characters")
        if room != room_id:
            raise TokenError("the join token is for another room")
        if unspent and self._spent.seen(jti):
            raise TokenError("the join token was already used: join again")
        return JoinClaim(room, user, jti, name.strip() if name else None, float(data["exp"]))

    def spend(self, claim: JoinClaim) -> None:
        """Mark a token used; raises TokenError if it already was (two uses racing)."""
        if not self._spent.add(claim.jti, claim.expires_at + self.leeway):
            raise TokenError("the join token was already used: join again")


class SpentTokens:
    """The ids of used tokens until they expire anyway."""

    def __init__(self, clock=time.time):
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        self.clock = clock

    def add(self, jti: str, until: float) -> bool:
        with self._lock:
            now = self.clock()
            if len(self._until) > 1024:
                self._until = {k: t for k, t in self._until.items() if t > now}
            if self._until.get(jti, 0.0) > now:
                return False
            self._until[jti] = max(until, now + 1.0)
            return True

    def seen(self, jti: str) -> bool:
        with self._lock:
            return self._until.get(jti, 0.0) > self.clock()
