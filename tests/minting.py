"""Join tokens as an application's backend mints them (docs/TOKENS.md), for the live servers of the tests."""
import time
import uuid

import jwt

# the live servers' AVATAR_SECRET_KEY (tests/conftest.py): long enough for HS512, so that test is about the algorithm
SECRET = "live-test-secret-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"


def mint(room: str, user: str, secret: str = SECRET, alg: str = "HS256", drop=(), **claims) -> str:
    """A join token for `user` in `room`; `claims` override the defaults, `drop` removes some."""
    now = int(time.time())
    body = {"aud": "avatar-meeting", "iat": now, "nbf": now, "exp": now + 60, "jti": uuid.uuid4().hex,
            "room": room, "sub": user} | claims
    for key in drop:
        body.pop(key)
    return jwt.encode(body, secret if alg != "none" else None, algorithm=alg)


def tampered(token: str) -> str:
    """The token with its user id changed and the signature kept."""
    head, body, sig = token.split(".")
    claims = jwt.utils.base64url_decode(body).replace(b'"sub":"', b'"sub":"x')
    return ".".join((head, jwt.utils.base64url_encode(claims).decode(), sig))
