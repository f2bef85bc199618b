"""Rooms, participants and the quality policy. Transport-agnostic: no Flask, no aiortc."""
