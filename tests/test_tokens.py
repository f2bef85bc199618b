"""Join tokens: JWTs with a fixed algorithm, audience, validity window and single use."""
import time

import jwt
import pytest

from connect.tokens import JoinTokens, SpentTokens, TokenError
from run import create_app
from tests.minting import mint, tampered

SECRET = "unit-secret-uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"


@pytest.fixture
def tokens():
    return JoinTokens(SECRET, ttl=60)


def test_an_issued_token_carries_the_claims(tokens):
    token = tokens.issue("standup", "bob", "n1", "Bob")
    claim = tokens.verify(token, "standup")
    assert (claim.room_id, claim.user_id, claim.jti, claim.display_name) == ("standup", "bob", "n1", "Bob")
    assert claim.expires_at == pytest.approx(time.time() + 60, abs=2)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"


REFUSED = {                                        # name -> (a token, what the refusal says)
    "wrong_key": (lambda: mint("r", "u", secret="another-secret-of-at-least-32-bytes-00"), "forged"),
    "alg_none": (lambda: mint("r", "u", secret=SECRET, alg="none"), "forged"),
    "alg_hs384": (lambda: mint("r", "u", secret=SECRET, alg="HS384"), "forged"),
    "expired": (lambda: mint("r", "u", secret=SECRET, exp=int(time.time()) - 5), "expired"),
    "not_yet_valid": (lambda: mint("r", "u", secret=SECRET, nbf=int(time.time()) + 30), "not valid yet"),
    "wrong_audience": (lambda: mint("r", "u", secret=SECRET, aud="other-app"), "aud"),
    "no_audience": (lambda: mint("r", "u", secret=SECRET, drop=("aud",)), "aud"),
    "no_jti": (lambda: mint("r", "u", secret=SECRET, drop=("jti",)), "'jti'"),
    "no_exp": (lambda: mint("r", "u", secret=SECRET, drop=("exp",)), "'exp'"),
    "no_room": (lambda: mint("r", "u", secret=SECRET, drop=("room",)), "strings"),
    "numeric_sub": (lambda: mint("r", "u", secret=SECRET, sub=7), "forged"),
    "other_room": (lambda: mint("elsewhere", "u", secret=SECRET), "another room"),
    "control_chars_in_name": (lambda: mint("r", "u", secret=SECRET, name="Eve\x1b[31m"), "name claim"),
    "long_name": (lambda: mint("r", "u", secret=SECRET, name="x" * 65), "name claim"),
    "tampered": (lambda: tampered(mint("r", "u", secret=SECRET)), "forged"),
    "garbage": (lambda: "not.a.token", "forged"),
    "empty": (lambda: "", "missing"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_bad_tokens_are_refused_with_a_reason(tokens, name):
    make, says = REFUSED[name]                     # minted now: the table is read long after import
    with pytest.raises(TokenError) as err:
        tokens.verify(make(), "r")
    assert says in err.value.message


def test_a_token_is_used_once(tokens):
    claim = tokens.verify(mint("r", "u", secret=SECRET, jti="once"), "r")
    tokens.spend(claim)
    with pytest.raises(TokenError, match="already used"):
        tokens.spend(claim)
    with pytest.raises(TokenError, match="already used"):
        tokens.verify(mint("r", "u", secret=SECRET, jti="once"), "r")
    assert tokens.verify(mint("r", "u", secret=SECRET, jti="once"), "r", unspent=False).jti == "once"


def test_leaving_accepts_an_expired_token(tokens):
    old = mint("r", "u", secret=SECRET, iat=int(time.time()) - 3600, exp=int(time.time()) - 3000)
    with pytest.raises(TokenError):
        tokens.verify(old, "r")
    assert tokens.verify(old, "r", check_expiry=False, unspent=False).user_id == "u"


def test_spent_ids_are_forgotten_once_their_token_expired():
    now = [1000.0]
    spent = SpentTokens(clock=lambda: now[0])
    assert spent.add("a", 1010.0) and not spent.add("a", 1010.0) and spent.seen("a")
    now[0] = 1011.0
    assert not spent.seen("a") and spent.add("a", 1100.0)


def test_creating_a_room_can_require_an_api_key():
    client = create_app({"TESTING": True, "CREATE_API_KEY": "k-123"}).test_client()
    body = {"user_id": "alice"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "k-12"}):
        r = client.post("/api/meeting/create", json=body, headers=headers)
        assert (r.status_code, r.json["error"]) == (401, "unauthorized"), headers
    assert client.post("/api/meeting/create", json=body, headers={"Authorization": "Bearer k-123"}).status_code == 201
    assert client.post("/api/meeting/create", json=body, headers={"X-API-Key": "k-123"}).status_code == 201


def test_the_join_token_is_a_jwt_a_backend_can_check(client):
    client.post("/api/meeting/create", json={"user_id": "a", "room_id": "r1"})
    token = client.post("/api/meeting/join", json={"room_id": "r1", "user_id": "bob", "display_name": "Bob"}).json["token"]
    secret = client.application.config["SECRET_KEY"]
    claims = jwt.decode(token, secret, algorithms=["HS256"], audience="avatar-meeting")
    assert (claims["room"], claims["sub"], claims["name"]) == ("r1", "bob", "Bob")
    assert claims["exp"] - claims["iat"] == 60
