"""Benchmarks: `python -m bench.fanout` (WebSocket fan-out) and `python -m bench.bandwidth` (PoseData vs video)."""
