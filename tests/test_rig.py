"""The photo avatar's calibration tables (avatars.rig.Calibration): per head turn, interpolated between turns,
and the first, frontal-only format still loads. Fast: no model, no mesh."""
from __future__ import annotations

import pytest

from avatars.rig import Calibration

# Two head turns by one pitch: at yaw 0 a value reads back as itself, at yaw 0.4 everything reads 0.2 higher
TABLES = {"yaw": [0.0, 0.4], "pitch": [0.0],
          "fields": {"eye_l": {"inputs": [0.0, 1.0], "read": [[[0.0, 1.0]], [[0.2, 1.2]]]}}}


def test_at_a_head_turn_of_the_grid_its_own_table_answers():
    c = Calibration(TABLES)
    assert c.input_for("eye_l", 0.5, 0.0, 0.0) == pytest.approx(0.5)
    assert c.input_for("eye_l", 0.5, 0.4, 0.0) == pytest.approx(0.3)


def test_between_head_turns_the_tables_are_blended_and_held_beyond_the_grid():
    c = Calibration(TABLES)
    assert c.input_for("eye_l", 0.5, 0.2, 0.0) == pytest.approx(0.4)
    assert c.input_for("eye_l", 0.5, 0.9, -0.5) == pytest.approx(0.3)      # past the last yaw, any pitch
    assert c.input_for("eye_l", 0.5, -0.9, 0.3) == pytest.approx(0.5)


def test_values_past_a_table_are_its_ends():
    c = Calibration(TABLES)
    assert c.input_for("eye_l", 1.5, 0.4, 0.0) == pytest.approx(1.0)
    assert c.input_for("eye_l", -1.0, 0.4, 0.0) == pytest.approx(0.0)


def test_the_first_format_is_one_frontal_table():
    c = Calibration({"mouth_open": [[0.0, 1.0], [0.2, 0.9]]})
    assert set(c.fields) == {"mouth_open"}
    assert c.input_for("mouth_open", 0.2, 0.3, -0.2) == pytest.approx(0.0)
    assert c.input_for("mouth_open", 0.55, 0.0, 0.0) == pytest.approx(0.5)
    assert Calibration({}).fields == {} and Calibration(None).fields == {}
