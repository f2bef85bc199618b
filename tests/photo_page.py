"""Photo avatars without the meeting: a small HTTP server for tests/photo_page.html, the page's static files and
`/api/avatar/<name>/{texture.png,mesh.json}` for one built avatar under any name that starts with its name.

    .venv/bin/python -m tests.photo_page [PORT]     # then open http://127.0.0.1:PORT/?n=4&animate=1
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import json
import pathlib
import sys
import threading
from collections.abc import Iterator

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = pathlib.Path(__file__).with_name("photo_page.html")


def build_astronaut(dest: pathlib.Path) -> tuple[np.ndarray, dict]:
    """scikit-image's astronaut as a photo avatar: writes dest/texture.png and dest/mesh.json, returns both."""
    import skimage.data

    from avatars.store import build_avatar

    texture, mesh = build_avatar(skimage.data.astronaut())      # as the store makes it
    dest.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dest / "texture.png"), cv2.cvtColor(texture, cv2.COLOR_RGB2BGR))
    data = mesh.as_json()
    (dest / "mesh.json").write_text(json.dumps(data))
    return texture, data


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".mjs": "text/javascript"}

    def __init__(self, *args, avatar_dir: pathlib.Path, avatar_name: str, **kwargs):
        self.avatar_dir, self.avatar_name = avatar_dir, avatar_name
        super().__init__(*args, directory=str(ROOT), **kwargs)

    def translate_path(self, path: str) -> str:
        parts = path.split("?", 1)[0].strip("/").split("/")
        if parts == [""]:
            return str(PAGE)
        if parts[0] == "static":
            return super().translate_path(path)
        if len(parts) == 4 and parts[:2] == ["api", "avatar"] and parts[2].startswith(self.avatar_name) \
                and parts[3] in ("texture.png", "mesh.json"):
            return str(self.avatar_dir / parts[3])
        return str(ROOT / "missing")

    def log_message(self, *args) -> None:     # quiet
        pass


@contextlib.contextmanager
def serve(avatar_dir: pathlib.Path, avatar_name: str = "astronaut", port: int = 0) -> Iterator[str]:
    """The page's server on 127.0.0.1 (a free port unless `port`); yields its URL."""
    handler = functools.partial(_Handler, avatar_dir=avatar_dir, avatar_name=avatar_name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        build_astronaut(pathlib.Path(tmp))
        with serve(pathlib.Path(tmp), port=int(sys.argv[1]) if len(sys.argv) > 1 else 8765) as url:
            print(f"{url}/?n=4&animate=1  (Ctrl-C stops)")
            threading.Event().wait()
