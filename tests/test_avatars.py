"""Photo avatars: real photos and videos through the real face mesh. A face becomes an avatar; no face, two faces,
damaged files, random bytes, a decompression bomb, a file over the limit, bad and taken names are answered as
they should be, and leave nothing on disk; a video's best frame; the default avatar; a restart; the HTTP API."""
from __future__ import annotations

import io
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from avatars import store as avatar_store
from avatars.face import OUTER_LIPS, TEXTURE, FaceMesh, landmarks
from avatars.render import Renderer
from avatars.rig import Rig, measure
from avatars.store import (
    BUILTIN,
    AvatarExists,
    AvatarNotFound,
    AvatarProtected,
    AvatarStore,
    BadImage,
    ImageTooLarge,
    NoFace,
    NotAnImage,
    TooLarge,
    best_frame,
    decode_photo,
    is_video,
)
from meeting.errors import InvalidRequest
from run import create_app

LIMIT = 1 << 20                      # the stores' and the app's upload limit in these tests: 1 MB


def _encode(rgb: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, fmt, **kw)
    return out.getvalue()


def _pair(a: np.ndarray) -> np.ndarray:
    """The astronaut's head and a half-size copy of it side by side, on grey."""
    head = a[20:260, 120:340]
    small = cv2.resize(head, (head.shape[1] // 2, head.shape[0] // 2), interpolation=cv2.INTER_AREA)
    out = np.full((head.shape[0], head.shape[1] + small.shape[1], 3), 128, np.uint8)
    out[:, :head.shape[1]] = head
    out[60:60 + small.shape[0], head.shape[1]:] = small
    return out


def _video(path, frames: list[np.ndarray], fps: int = 10) -> bytes:
    """An MP4 (MPEG-4 part 2) of RGB frames, made by OpenCV."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, bytes]:
    """The test's files, made once: real pictures, damaged ones, a bomb and videos."""
    tmp = tmp_path_factory.mktemp("files")
    astronaut, coffee = data.astronaut(), data.coffee()
    png = _encode(astronaut)
    noise = np.random.default_rng(1).integers(0, 256, (700, 700, 3), np.uint8)
    files = {"astronaut": png, "astronaut.jpg": _encode(astronaut, "JPEG", quality=90),
             "coffee": _encode(coffee, "JPEG"), "flat": _encode(np.full((300, 300, 3), 200, np.uint8)),
             "pair": _encode(_pair(astronaut)), "truncated": png[:len(png) // 2],
             "truncated.jpg": _encode(astronaut, "JPEG")[:20000], "random": os.urandom(20000),
             "bomb": _encode(np.zeros((20000, 20000), bool)),          # 400 megapixels in some 50 KB
             "49mp": _encode(np.zeros((7000, 7000), bool)),            # under Pillow's own limit, over ours
             "over_limit": _encode(noise)}                             # a real picture of some 1.5 MB
    frames = [cv2.resize(coffee, (512, 512))] * 12 + [astronaut] * 18
    files["video"] = _video(tmp / "face.mp4", frames)
    files["video_no_face"] = _video(tmp / "coffee.mp4", frames[:12])
    assert len(files["bomb"]) < 200_000 and len(files["over_limit"]) > LIMIT
    return files


@pytest.fixture
def store(tmp_path) -> AvatarStore:
    return AvatarStore(str(tmp_path / "avatars"), LIMIT)


def _left_on_disk(store: AvatarStore) -> list[str]:
    return sorted(str(p.relative_to(store.directory)) for p in store.directory.rglob("*")) \
        if store.directory.exists() else []


# --- the store --------------------------------------------------------------------------------------

def test_a_photo_with_a_face_becomes_an_avatar_of_four_files(store, files):
    info = store.create("ann", files["astronaut"], "ann.png")
    assert (info.name, info.faces_found, info.notes, info.source, info.width, info.height) == \
        ("ann", 1, [], "photo", 512, 512)
    assert _left_on_disk(store) == ["ann", "ann/mesh.json", "ann/meta.json", "ann/preview.png", "ann/texture.png"]
    assert Image.open(store.texture_path("ann")).size == (TEXTURE, TEXTURE)
    assert Image.open(store.path("ann", "preview.png")).size == (256, 256)
    mesh = store.mesh("ann")
    assert isinstance(mesh, FaceMesh) and mesh.points.shape[0] > 478 and mesh.triangles.shape[1] == 3
    assert json.loads(store.path("ann", "meta.json").read_text())["version"] == info.version == store.get("ann").version


def test_a_photo_is_turned_upright_by_its_exif_orientation(store, files):
    upright = data.astronaut()[:, 56:456]                     # 400 wide, 512 high
    exif = Image.Exif()
    exif[0x0112] = 6                                          # "turn 90° clockwise to show"
    stored = _encode(np.ascontiguousarray(np.rot90(upright, 1)), "JPEG", quality=95, exif=exif)
    rgb = decode_photo(stored, 10**7)
    assert rgb.shape == (512, 400, 3) and np.abs(rgb.astype(int) - upright).mean() < 8
    info = store.create("turned", stored, "turned.jpg")
    assert (info.width, info.height, info.faces_found) == (400, 512, 1)


def test_of_two_faces_the_largest_is_taken_and_the_notes_say_so(store, files):
    info = store.create("pair", files["pair"], "pair.png")
    assert info.faces_found == 2 and info.notes == ["2 faces found: the largest was taken"]
    assert store.get("pair").notes == info.notes


REFUSED = [
    ("coffee", "coffee.jpg", NoFace, "no face found in the photo"),
    ("flat", "grey.png", NoFace, "no face found in the photo"),
    ("truncated", "cut.png", BadImage, "damaged or truncated"),
    ("truncated.jpg", "cut.jpg", BadImage, "damaged or truncated"),
    ("random", "noise.png", NotAnImage, "not a picture"),
    ("random", "noise.mp4", NotAnImage, "not an MP4"),
    ("bomb", "bomb.png", ImageTooLarge, "too many pixels"),
    ("49mp", "big.png", ImageTooLarge, "7000 x 7000 pixels"),
    ("over_limit", "big.png", TooLarge, "over the limit of 1 MB"),
    ("video_no_face", "coffee.mp4", NoFace, "no face found in the video"),
]


@pytest.mark.parametrize("key,filename,error,words", REFUSED)
def test_refused_files_leave_nothing_on_disk(store, files, key, filename, error, words):
    with pytest.raises(error) as caught:
        store.create("x", files[key], filename)
    assert words in caught.value.message
    assert _left_on_disk(store) == []


def test_a_video_cut_short_is_a_bad_image(store, files):
    with pytest.raises(BadImage):
        store.create("cut", files["video"][:4000], "cut.mp4")
    assert _left_on_disk(store) == []


@pytest.mark.parametrize("name", ["", "-ann", "_ann", "a" * 65, "../ann", "a/b", "a b", "ann.png", "änn", None])
def test_names_that_are_not_safe_are_refused(store, files, name):
    with pytest.raises(InvalidRequest):
        store.create(name, files["astronaut"], "a.png")
    assert _left_on_disk(store) == []


def test_taken_names_are_refused(store, files):
    store.create("ann", files["astronaut"], "")
    for name in ("ann", BUILTIN):
        with pytest.raises(AvatarExists):
            store.create(name, files["astronaut"], "")
    assert _left_on_disk(store) == ["ann", "ann/mesh.json", "ann/meta.json", "ann/preview.png", "ann/texture.png"]


def test_a_name_taken_while_the_avatar_was_made_leaves_the_other_whole(store, files):
    """Two requests for one name at once: the second one's rename finds the first one's directory."""
    (store.ensure() / "ann").mkdir()
    (store.directory / "ann" / "meta.json").write_text("{}")
    with pytest.raises(AvatarExists):
        store._make("ann", data.astronaut(), "photo", 512, 512)
    assert _left_on_disk(store) == ["ann", "ann/meta.json"]


def test_a_failure_while_writing_leaves_nothing(store, files, monkeypatch):
    real = avatar_store._write

    def disk_full(path, content):
        if path.name == "meta.json":
            raise OSError(28, "No space left on device")
        real(path, content)

    monkeypatch.setattr(avatar_store, "_write", disk_full)
    with pytest.raises(OSError):
        store.create("ann", files["astronaut"], "ann.png")
    assert _left_on_disk(store) == []


def test_a_video_gives_the_frame_with_the_best_face(store, files):
    info = store.create("clip", files["video"], "")                 # known by its magic bytes, not its name
    assert (info.source, info.faces_found, info.width, info.height) == ("video", 1, 512, 512)
    astronaut = data.astronaut()
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    frames = [data.coffee(), np.pad(small, ((128, 128), (128, 128), (0, 0))), astronaut]
    best, seen = best_frame(iter(frames))
    assert best is astronaut and seen == 3
    assert best_frame(iter(frames[:1])) == (None, 1)


@pytest.mark.parametrize("head,filename,video", [
    (b"\x00\x00\x00\x20ftypisom", "", True), (b"\x00\x00\x00\x14ftypqt  ", "", True),
    (b"\x1aE\xdf\xa3\x9fB\x86\x81", "", True), (b"\x00\x00\x00\x18ftypheic", "", False),
    (b"\x89PNG\r\n\x1a\n", "a.png", False), (b"whatever", "clip.MOV", True), (b"whatever", "clip.webm", True)])
def test_videos_are_known_by_their_magic_bytes_or_their_name(head, filename, video):
    assert is_video(head + bytes(8), filename) is video


def test_the_default_avatar_is_the_astronaut_until_another_is_chosen(store, files):
    assert store.default_name() == BUILTIN
    assert [a.name for a in store.list()] == [BUILTIN]               # made on first use
    store.create("ann", files["astronaut.jpg"], "ann.jpg")
    assert store.set_default("ann") == "ann" and store.default_name() == "ann"
    with pytest.raises(AvatarNotFound):
        store.set_default("nobody")
    with pytest.raises(AvatarProtected):
        store.delete(BUILTIN)
    store.delete("ann")
    assert store.default_name() == BUILTIN and not (store.directory / "default.json").exists()
    assert _left_on_disk(store) == [BUILTIN] + [f"{BUILTIN}/{f}" for f in
                                                ("mesh.json", "meta.json", "preview.png", "texture.png")]
    for call in (store.delete, store.get, store.texture_path, store.mesh):
        with pytest.raises(AvatarNotFound):
            call("ann")
    with pytest.raises(AvatarNotFound):
        store.get("../avatars")


def test_a_new_store_on_the_same_directory_sees_the_avatars_and_the_default(store, files):
    made = store.create("ann", files["astronaut"], "ann.png")
    store.set_default("ann")
    again = AvatarStore(str(store.directory), LIMIT)
    assert again.get("ann") == made and again.default_name() == "ann"
    assert [a.name for a in again.list()] == [BUILTIN, "ann"]


# --- the face: how it moves and how a landmarker reads it ------------------------------------------

@pytest.fixture(scope="module")
def astronaut():
    """(texture, mesh) of the astronaut, as every avatar is made."""
    return avatar_store.build_avatar(data.astronaut())


@pytest.mark.parametrize("yaw, pitch", [(0.0, 0.0), (0.35, -0.2), (-0.3, 0.25)])
def test_a_turned_face_measures_as_asked(astronaut, yaw, pitch):
    """The mesh's own landmarks, as the capture measures them, give the lids' and lips' values asked at any turn
    (a turn foreshortens an eye's width and its lid gap unequally; the rig sets them as seen)."""
    _, mesh = astronaut
    rig = Rig(FaceMesh(mesh.points, mesh.triangles))                # uncalibrated: the geometry alone
    for eye, mouth in ((0.3, 0.0), (0.7, 0.5), (1.0, 0.9)):
        got = measure(rig.deform3({"yaw": yaw, "pitch": pitch, "eye_l": eye, "eye_r": eye, "mouth_open": mouth}))
        assert got["eye_l"] == pytest.approx(eye, abs=0.02) and got["eye_r"] == pytest.approx(eye, abs=0.02)
        assert got["mouth_open"] == pytest.approx(mouth, abs=0.02)


def test_the_photos_teeth_are_painted_over_so_a_closed_mouth_reads_closed(astronaut):
    """The astronaut smiles with her teeth: the texture keeps none of them within the lips, and the pages'
    landmark model reads the avatar's closed mouth as closed, its open mouth as open, frontal and turned."""
    texture, mesh = astronaut
    lips = np.zeros(texture.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(mesh.points[list(OUTER_LIPS), :2]).astype(np.int32)], 1)
    lab = cv2.cvtColor(texture, cv2.COLOR_RGB2LAB)[lips > 0].astype(int)
    whiteish = (lab[:, 0] > 200) & (np.abs(lab[:, 1] - 128) < 12) & (np.abs(lab[:, 2] - 128) < 12)
    assert whiteish.mean() < 0.02, f"{whiteish.mean():.0%} of the lips look like teeth"
    renderer = Renderer(texture, mesh)
    for yaw, pitch in ((0.0, 0.0), (0.3, 0.15)):
        base = {"yaw": yaw, "pitch": pitch, "eye_l": 1.0, "eye_r": 1.0, "mouth_wide": 0.5}
        closed = measure(landmarks(renderer.render({**base, "mouth_open": 0.0}))[0])
        opened = measure(landmarks(renderer.render({**base, "mouth_open": 0.8, "jaw_open": 0.5}))[0])
        assert closed["mouth_open"] < 0.12 and opened["mouth_open"] > 0.6, (yaw, closed, opened)


# --- the HTTP API ----------------------------------------------------------------------------------

@pytest.fixture
def app(tmp_path):
    return create_app({"TESTING": True, "PHOTO_AVATARS_DIR": str(tmp_path / "avatars"), "PHOTO_MAX_MB": 1})


def _create(client, name: str, content: bytes, filename: str = "face.png", headers=None, **fields):
    return client.post("/api/avatar/create", content_type="multipart/form-data", headers=headers,
                       data={"name": name, "prompt_face": (io.BytesIO(content), filename), **fields})


def test_create_list_files_start_and_delete_over_http(client, files):
    r = _create(client, "ann", files["astronaut"], avatar_model="MuseTalk", tts_model="edge-tts")
    assert r.status_code == 201, r.json
    body = r.json
    assert body["success"] and body["name"] == "ann" and body["faces_found"] == 1
    assert len(body["warnings"]) == 2 and "MuseTalk" in body["warnings"][0] and "network" in body["warnings"][1]
    assert body["texture_url"].startswith("/api/avatar/ann/texture.png?v=")
    assert _create(client, "bob", files["pair"], avatar_model="photo", tts_model="piper").json["warnings"] == \
        ["2 faces found: the largest was taken"]

    listing = client.get("/api/avatar/list").json
    assert [a["name"] for a in listing["avatars"]] == [BUILTIN, "ann", "bob"] and listing["default"] == BUILTIN
    assert listing["avatars"][1]["mesh_url"] == body["mesh_url"]

    preview = client.get(body["preview_url"])
    assert preview.mimetype == "image/png" and Image.open(io.BytesIO(preview.data)).size == (256, 256)
    texture = client.get(body["texture_url"])
    assert Image.open(io.BytesIO(texture.data)).size == (TEXTURE, TEXTURE)
    assert texture.cache_control.max_age == 365 * 86400 and texture.cache_control.immutable
    plain = client.get("/api/avatar/ann/texture.png")                 # no version: revalidated each time
    assert plain.cache_control.no_cache and plain.get_etag()[0] == body["texture_url"].split("=")[1]
    assert client.get("/api/avatar/ann/texture.png", headers={"If-None-Match": plain.headers["ETag"]}).status_code == 304
    mesh = client.get(body["mesh_url"])
    assert mesh.mimetype == "application/json" and FaceMesh.from_json(mesh.json).points.shape[1] == 3

    assert client.post("/api/avatar/start", json={"avatar_name": "ann"}).json == {"success": True, "default": "ann"}
    assert client.get("/api/avatar/list").json["default"] == "ann"
    r = client.delete("/api/avatar/delete", json={"avatar_name": "ann"})
    assert r.status_code == 200 and r.json["default"] == BUILTIN
    r = client.delete("/api/avatar/delete", data={"avatar_name": "bob"})          # a form works as well
    assert r.status_code == 200
    assert [a["name"] for a in client.get("/api/avatar/list").json["avatars"]] == [BUILTIN]


def test_a_video_over_http(client, files):
    r = _create(client, "clip", files["video"], "clip.mp4")
    assert r.status_code == 201 and r.json["faces_found"] == 1


HTTP_ERRORS = [
    ("random", "x", 415, "not_an_image"),
    ("coffee", "x", 422, "no_face"),
    ("truncated", "x", 422, "bad_image"),
    ("bomb", "x", 413, "image_too_large"),
    ("over_limit", "x", 413, "too_large"),
    ("astronaut", "a b", 400, "bad_request"),
    ("astronaut", BUILTIN, 409, "avatar_exists"),
]


@pytest.mark.parametrize("key,name,status,code", HTTP_ERRORS)
def test_create_errors_are_json_with_their_status(client, app, files, key, name, status, code):
    r = _create(client, name, files[key])
    assert (r.status_code, r.json["success"], r.json["error"]) == (status, False, code) and r.json["message"]
    assert not [p for p in app.extensions["avatar"].avatars.directory.glob("*") if p.name != BUILTIN]


def test_the_upload_limit_is_the_avatar_routes_alone(client, files):
    just_over = files["astronaut"] + bytes(LIMIT - len(files["astronaut"]) + 1)     # the body is within the slack
    r = _create(client, "ann", just_over)
    assert (r.status_code, r.json["error"]) == (413, "too_large")
    r = client.post("/api/meeting/create", json={"user_id": "a", "pad": "x" * 20000})
    assert r.status_code == 413                                       # other routes keep MAX_JSON_BYTES
    r = client.post("/api/avatar/start", json={"avatar_name": "x" * 20000})
    assert (r.status_code, r.json["error"]) == (413, "too_large")


@pytest.mark.parametrize("method,path,body,status,code", [
    ("post", "/api/avatar/create", {}, 400, "bad_request"),
    ("delete", "/api/avatar/delete", {}, 400, "bad_request"),
    ("delete", "/api/avatar/delete", {"avatar_name": "nobody"}, 404, "avatar_not_found"),
    ("delete", "/api/avatar/delete", {"avatar_name": BUILTIN}, 409, "avatar_protected"),
    ("post", "/api/avatar/start", {"avatar_name": "nobody"}, 404, "avatar_not_found"),
    ("post", "/api/avatar/start", {"avatar_name": 7}, 400, "bad_request"),
    ("get", "/api/avatar/preview/nobody", None, 404, "avatar_not_found"),
    ("get", "/api/avatar/nobody/texture.png", None, 404, "avatar_not_found"),
    ("get", "/api/avatar/.new-x1/mesh.json", None, 404, "avatar_not_found"),      # a directory being made
    ("get", "/api/avatar/..%2Fetc/mesh.json", None, 404, "not_found"),            # no such route
])
def test_other_errors_are_json(client, method, path, body, status, code):
    r = getattr(client, method)(path, json=body)
    assert (r.status_code, r.json["error"]) == (status, code)


def test_with_an_api_key_changes_need_it(tmp_path, files):
    client = create_app({"TESTING": True, "PHOTO_AVATARS_DIR": str(tmp_path), "CREATE_API_KEY": "k" * 16}).test_client()
    assert _create(client, "ann", files["astronaut"]).status_code == 401
    assert client.post("/api/avatar/start", json={"avatar_name": BUILTIN}).status_code == 401
    assert client.delete("/api/avatar/delete", json={"avatar_name": BUILTIN}).status_code == 401
    assert client.get("/api/avatar/list").status_code == 200
    assert _create(client, "ann", files["astronaut"], headers={"Authorization": "Bearer " + "k" * 16}).status_code == 201


def test_a_participant_joins_with_a_photo_avatar_and_everyone_is_told(live_server):
    from tests.test_live import new_room
    from tests.wsclient import MeetingClient
    from wire import protocol as p
    assert "astronaut" in [a["name"] for a in live_server.api("GET", "/api/avatar/list")[1]["avatars"]]
    room = new_room(live_server)
    bob = MeetingClient(live_server, room, "bob")
    status, body = live_server.api("POST", "/api/meeting/join", {"room_id": room, "user_id": "ann",
                                                                 "avatar": "astronaut"})
    assert status == 200 and body["avatar"] == "astronaut", body
    ann = MeetingClient(live_server, room, "ann", join=False)
    ann.open()
    ann.send(p.Join(body["token"]))
    snapshot = ann.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.SNAPSHOT)
    assert {m.user_id: m.avatar for m in snapshot.members} == {"bob": "", "ann": "astronaut"}
    joined = bob.expect(p.PresenceMsg, where=lambda m: m.event == p.Presence.JOINED)
    assert joined.members[0].avatar == "astronaut"
    info = live_server.api("GET", f"/api/meeting/{room}")[1]
    assert {m["user_id"]: m["avatar"] for m in info["participants"]} == {"bob": None, "ann": "astronaut"}
    status, body = live_server.api("POST", "/api/meeting/join", {"room_id": room, "user_id": "cy",
                                                                 "avatar": "nobody-has-this"})
    assert (status, body["error"]) == (404, "avatar_not_found")
    status, body = live_server.api("POST", "/api/meeting/create", {"user_id": "o", "host_avatar": "nobody-has-this"})
    assert (status, body["error"]) == (404, "avatar_not_found")
    ann.close()
    bob.close()
