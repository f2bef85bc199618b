"""Photo avatars over HTTP (docs/AVATARS.md): make one from a photo or a short video, list them, their preview,
the texture and mesh pages draw with, delete one, and choose the default of new one-to-one sessions."""
from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, jsonify, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from avatars.store import AvatarInfo, TooLarge
from connect.api import STATUS, _require_api_key, _services, meeting_error
from meeting.errors import InvalidRequest, MeetingError

bp = Blueprint("avatars", __name__, url_prefix="/api/avatar")
bp.register_error_handler(MeetingError, meeting_error)
STATUS.update({"not_an_image": 415, "bad_image": 422, "image_too_large": 413, "too_large": 413, "no_face": 422,
               "avatar_exists": 409, "avatar_not_found": 404, "avatar_protected": 409})
FORM_SLACK = 64 << 10            # a multipart body's boundaries and small fields, beyond the file itself
YEAR = 365 * 86400
AVATAR_MODELS = ("photo",)       # what avatar_model can be here: the photo avatar that PoseData moves
TTS_MODELS = {"edge-tts": "edge", "edge": "edge", "piper": "piper", "espeak": "espeak", "espeak-ng": "espeak"}


@bp.errorhandler(RequestEntityTooLarge)
def body_too_large(exc: RequestEntityTooLarge):
    """A body without Content-Length that turned out too long: the same answer as one that said so."""
    limit = _services().config.PHOTO_MAX_MB
    return meeting_error(TooLarge(f"the request body is over its limit ({limit} MB for an avatar's photo or video)"))


def _store():
    return _services().avatars


def _urls(a: AvatarInfo) -> dict:
    """Versioned URLs: a page may cache them for good."""
    return {"preview_url": f"/api/avatar/preview/{a.name}?v={a.version}",
            "texture_url": f"/api/avatar/{a.name}/texture.png?v={a.version}",
            "mesh_url": f"/api/avatar/{a.name}/mesh.json?v={a.version}"}


@bp.post("/create")
def create():
    """multipart/form-data: `name`, `prompt_face` (a photo, or a short MP4/MOV/WebM video), and the design's
    optional `avatar_model` and `tts_model`: what cannot be had here is named in `warnings`."""
    _require_api_key()
    config = _services().config
    limit = config.PHOTO_MAX_MB << 20
    if (request.content_length or 0) > limit + FORM_SLACK:
        raise TooLarge(f"the upload is over the limit of {config.PHOTO_MAX_MB} MB")
    request.max_content_length = limit + FORM_SLACK      # this route only; every other keeps MAX_JSON_BYTES
    upload = request.files.get("prompt_face")
    if upload is None:
        raise InvalidRequest("prompt_face is required: the photo, as a multipart/form-data file")
    info = _store().create(request.form.get("name", ""), upload.read(limit + 1), upload.filename or "")
    warnings = info.notes + _model_warnings(request.form.get("avatar_model", ""), request.form.get("tts_model", ""))
    return jsonify(success=True, name=info.name, faces_found=info.faces_found, warnings=warnings, **_urls(info)), 201


def _model_warnings(avatar_model: str, tts_model: str) -> list[str]:
    """What the request asked for that this server does not have, and what it uses instead."""
    warnings, engine = [], _services().config.TTS_ENGINE
    if avatar_model.strip() and avatar_model.strip().lower() not in AVATAR_MODELS:
        warnings.append(f"avatar_model {avatar_model.strip()!r} is not available here (no such model offline): "
                        "the photo avatar driven by PoseData is used")
    asked = TTS_MODELS.get(tts_model.strip().lower())
    if tts_model.strip() and asked != engine:
        if asked == "edge":
            warnings.append(f"tts_model {tts_model.strip()!r} needs the network: the offline voice ({engine}) is used "
                            "unless the server runs with AVATAR_TTS_ENGINE=edge")
        else:
            warnings.append(f"tts_model {tts_model.strip()!r}: this server's voice is {engine} (AVATAR_TTS_ENGINE)")
    return warnings


@bp.get("/list")
def listing():
    store = _store()
    avatars = [{**asdict(a), **_urls(a)} for a in store.list()]
    return jsonify(success=True, avatars=avatars, default=store.default_name())


@bp.get("/preview/<name>")
def preview(name: str):
    return _file(name, "preview.png", "image/png")


@bp.get("/<name>/texture.png")
def texture(name: str):
    return _file(name, "texture.png", "image/png")


@bp.get("/<name>/mesh.json")
def mesh(name: str):
    return _file(name, "mesh.json", "application/json")


def _file(name: str, filename: str, mimetype: str):
    """An avatar's file with its version as ETag; asked for by its versioned URL (`?v=`), cached for good (a
    name deleted and made again has another version), else revalidated each time."""
    store = _store()
    info = store.get(name)
    current = request.args.get("v") == info.version
    response = send_file(store.path(name, filename), mimetype=mimetype, etag=info.version,
                         max_age=YEAR if current else None)
    response.cache_control.immutable = current or None
    return response


@bp.delete("/delete")
def delete():
    """`avatar_name` (JSON body or form); deleting the default makes the shipped one the default again."""
    _require_api_key()
    name = _avatar_name()
    _store().delete(name)
    return jsonify(success=True, deleted=name, default=_store().default_name())


@bp.post("/start")
def start():
    """`avatar_name` (JSON body or form): the default avatar of new one-to-one sessions from now on."""
    _require_api_key()
    return jsonify(success=True, default=_store().set_default(_avatar_name()))


def _avatar_name() -> str:
    body = request.get_json(silent=True)
    name = body.get("avatar_name") if isinstance(body, dict) else request.form.get("avatar_name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("avatar_name is required")
    return name
