"""A one-to-one session's per-stage timing on the wire (docs/SESSIONS.md, "Timing"): the pure functions, no models."""
from __future__ import annotations

from pipeline.sessions import chunk_timing, turn_timing
from pipeline.speech import TurnTimes


def test_a_chunk_says_its_stages_in_milliseconds_since_the_message():
    times = TurnTimes("session", 100.0, llm_first_token=100.12, first_sentence=100.25)
    assert chunk_timing(times, tts_start=100.25, render_start=100.38, sent=100.7) == {
        "llm_first_token_ms": 120.0, "first_sentence_ms": 250.0, "tts_ms": 130.0, "render_ms": 320.0,
        "sent_ms": 700.0}


def test_a_turn_sums_its_chunks_and_keeps_the_first_ones_sending():
    times = TurnTimes("session", 10.0, asr_done=10.3, llm_first_token=10.4, first_sentence=10.5)
    chunks = [chunk_timing(times, 10.5, 10.6, 11.0), chunk_timing(times, 11.0, 11.15, 11.6)]
    assert turn_timing(times, chunks, done=11.9) == {
        "asr_ms": 300.0, "llm_first_token_ms": 400.0, "first_sentence_ms": 500.0, "first_chunk_ms": 1000.0,
        "chunks": 2, "tts_ms": 250.0, "render_ms": 850.0, "done_ms": 1900.0}


def test_a_turn_without_chunks_or_a_transcript_says_so_with_nulls():
    timing = turn_timing(TurnTimes("session", 5.0), [], done=5.01)
    assert timing == {"asr_ms": None, "llm_first_token_ms": None, "first_sentence_ms": None, "first_chunk_ms": None,
                      "chunks": 0, "tts_ms": 0, "render_ms": 0, "done_ms": 10.0}
