"""The one typed settings object: AVATAR_* variables, types and ranges checked at start-up, one default each."""
import dataclasses

import pytest

import config
from meeting.manager import MeetingManager, MeetingSettings
from meeting.room import RoomLimits
from run import create_app


def test_environment_and_overrides_are_typed():
    s = config.load({"CHAT_RATE": "2.5"}, environ={"AVATAR_MAX_PARTICIPANTS": "9", "AVATAR_RTC_ENABLED": "off",
                                                   "AVATAR_JOIN_TIMEOUT": "3"})
    assert (s.MAX_PARTICIPANTS, s.RTC_ENABLED, s.JOIN_TIMEOUT, s.CHAT_RATE) == (9, False, 3.0, 2.5)
    assert s["MAX_PARTICIPANTS"] == 9 and isinstance(s.JOIN_TIMEOUT, float)
    assert len(s.SECRET_KEY) == 64                                    # random when not set
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.MAX_PARTICIPANTS = 3


BAD = {
    "AVATAR_MAX_PARTICIPANTS=many": ("AVATAR_MAX_PARTICIPANTS='many': must be a whole number"),
    "AVATAR_MAX_PARTICIPANTS=40": ("AVATAR_MAX_PARTICIPANTS=40: must be at most 16"),
    "AVATAR_JOIN_TIMEOUT=0": ("AVATAR_JOIN_TIMEOUT=0.0: must be at least 0.5"),
    "AVATAR_RTC_ENABLED=maybe": ("AVATAR_RTC_ENABLED='maybe': must be true or false"),
    "AVATAR_LANGUAGE=fr": ("AVATAR_LANGUAGE='fr': must be one of en, zh"),
    "AVATAR_AUDIO_FRAME_MS=30": ("AVATAR_AUDIO_FRAME_MS=30: must be one of 20, 40, 60"),
    "AVATAR_QUALITY_TIERS=4:30": ("AVATAR_QUALITY_TIERS='4:30'"),
    "AVATAR_RTC_ICE_SERVERS=stun:x": ("AVATAR_RTC_ICE_SERVERS='stun:x': must be a JSON list"),
    "AVATAR_SECRET_KEY=short": ("AVATAR_SECRET_KEY: must be at least 32 bytes"),
    "AVATAR_BIND=localhost": ("AVATAR_BIND='localhost': must be host:port"),
}


@pytest.mark.parametrize("assignment", BAD)
def test_a_bad_value_is_refused_with_its_name(assignment):
    key, value = assignment.split("=", 1)
    with pytest.raises(config.SettingsError) as err:
        config.load(environ={key: value})
    assert BAD[assignment] in str(err.value)


def test_every_bad_value_is_listed_at_once():
    with pytest.raises(config.SettingsError) as err:
        config.load(environ={"AVATAR_CHAT_RATE": "x", "AVATAR_OUTBOX_LIMIT": "1"})
    assert "AVATAR_CHAT_RATE" in str(err.value) and "AVATAR_OUTBOX_LIMIT" in str(err.value)


def test_the_app_refuses_to_start_with_a_bad_value(monkeypatch):
    monkeypatch.setenv("AVATAR_MAX_PARTICIPANTS", "many")
    with pytest.raises(config.SettingsError, match="AVATAR_MAX_PARTICIPANTS"):
        create_app()


def test_an_unknown_variable_is_named_in_the_log(caplog):
    config.load(environ={"AVATAR_MAX_PARTICIPANT": "9"})
    assert "AVATAR_MAX_PARTICIPANT" in caplog.text


def test_the_meeting_core_takes_its_defaults_from_the_settings():
    d = config.DEFAULTS
    assert MeetingSettings() == MeetingSettings.of(d)
    assert dataclasses.asdict(RoomLimits()) == RoomLimits.of(d)
    room = MeetingManager().create_room("owner")
    assert room.max_participants == d.DEFAULT_MAX_PARTICIPANTS and room.limits.outbox_limit == d.OUTBOX_LIMIT
    capped = MeetingSettings.of(config.load(environ={"AVATAR_MAX_PARTICIPANTS": "4"}))
    assert capped.default_max_participants == 4


def test_two_apps_share_no_state():
    a, b = create_app({"TESTING": True}), create_app({"TESTING": True, "MAX_PARTICIPANTS": 5})
    a.test_client().post("/api/meeting/create", json={"user_id": "x", "room_id": "only-in-a"})
    assert b.test_client().get("/api/meeting/only-in-a").status_code == 404
    assert (a.config["MAX_PARTICIPANTS"], b.config["MAX_PARTICIPANTS"]) == (16, 5)
