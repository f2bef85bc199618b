"""A terminal chat bot on AvatarIntegration: a line on stdin is a message; the reply's text is printed as it
streams, each sentence's MP4 is written to --out and its path printed. It ends at end of input (Ctrl-D) or
Ctrl-C, and deletes its session.

    python -m integrations.terminal_bot --server http://localhost:8000 --out replies/
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import sys
import threading
from typing import TextIO

from avatar_client import AvatarError, SessionInfo
from integrations.base import AvatarIntegration, AvatarResponse


class TerminalBot(AvatarIntegration):
    """One user (the terminal); stdout gets the reply and the videos' paths, stderr the rest."""

    def __init__(self, server_url: str, config: dict | None = None, out_dir: str | pathlib.Path = "replies",
                 stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, **kwargs):
        super().__init__(server_url, config, out_dir=out_dir, **kwargs)
        self.stdin, self.stdout = stdin, stdout
        self.user = "terminal"
        self.prompt = "you> " if stdin.isatty() else ""
        self._first_chunk = True

    async def run(self) -> None:
        while line := await self._readline():
            if not line.strip():
                continue
            try:
                await self.on_message(self.user, line.strip())
            except AvatarError as exc:          # one failed message is said, and the bot goes on
                print(f"\nerror: {exc}", file=sys.stderr, flush=True)

    async def _readline(self) -> str:
        """The next line ("" at the end), read on a daemon thread: Ctrl-C does not wait for a line to end."""
        loop, line = asyncio.get_running_loop(), asyncio.get_running_loop().create_future()

        def read() -> None:
            if self.prompt:
                print(self.prompt, end="", file=self.stdout, flush=True)
            text = self.stdin.readline()
            loop.call_soon_threadsafe(lambda: line.done() or line.set_result(text))
        threading.Thread(target=read, name="stdin", daemon=True).start()
        return await line

    async def on_session_created(self, user_id: str, info: SessionInfo) -> None:
        print(f"session {info.session_id}", file=sys.stderr, flush=True)
        for warning in info.warnings:
            print(f"warning: {warning}", file=sys.stderr, flush=True)

    async def on_text_chunk(self, user_id: str, chunk: str) -> None:
        if self._first_chunk:
            print("avatar> ", end="", file=self.stdout)
            self._first_chunk = False
        print(chunk, end="", file=self.stdout, flush=True)

    async def get_avatar_response(self, user_id: str, text: str) -> AvatarResponse:
        self._first_chunk = True
        return await super().get_avatar_response(user_id, text)

    async def send_to_platform(self, user_id: str, response: AvatarResponse) -> None:
        if self._first_chunk and response.error is None:        # (nothing streamed: the whole text)
            print(f"avatar> {response.text}", end="", file=self.stdout)
            self._first_chunk = False
        if not self._first_chunk:
            print(file=self.stdout)
        if response.error is not None:
            print(f"error: {response.error.code}: {response.error.message}", file=sys.stderr, flush=True)
        for path in response.paths:
            print(f"video: {path}", file=self.stdout)
        self.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Chat with the avatar server from a terminal.")
    parser.add_argument("--server", default="http://localhost:8000", help="the server's base URL")
    parser.add_argument("--out", default="replies", help="where each sentence's MP4 is written")
    parser.add_argument("--avatar", help="avatar_template: a stored photo avatar's name")
    parser.add_argument("--voice", help="tts_voice, e.g. en-US-GuyNeural or zh-CN-XiaoxiaoNeural")
    parser.add_argument("--api-key", help="sent as Authorization: Bearer")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the next piece of a reply")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = {key: value for key, value in (("avatar_template", args.avatar), ("tts_voice", args.voice)) if value}
    bot = TerminalBot(args.server, config, args.out, api_key=args.api_key, timeout=args.timeout)
    try:
        asyncio.run(bot.serve())
    except (KeyboardInterrupt, asyncio.CancelledError):        # Ctrl-C, SIGTERM: the session is deleted already
        print(file=sys.stderr)


if __name__ == "__main__":
    main()
