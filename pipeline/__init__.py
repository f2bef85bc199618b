"""The AI host's speech and avatar stages: VAD -> ASR -> LLM -> TTS -> lip-sync, frames in, frames out."""
