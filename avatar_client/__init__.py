"""A Python client of the avatar server's one-to-one sessions and chat API (docs/INTEGRATION.md): AvatarClient
(sync) and AsyncAvatarClient (asyncio), typed results and stream events, and one error type, AvatarError."""
from avatar_client.aio import AsyncAvatarClient
from avatar_client.client import AvatarClient
from avatar_client.protocol import (
    AvatarError,
    ChatReply,
    Complete,
    Error,
    Event,
    Interrupted,
    Reply,
    SessionInfo,
    TextChunk,
    Transcript,
    VideoChunk,
)

__all__ = ["AsyncAvatarClient", "AvatarClient", "AvatarError", "ChatReply", "Complete", "Error", "Event", "Interrupted",
           "Reply", "SessionInfo", "TextChunk", "Transcript", "VideoChunk"]
