"""The start page and the meeting page."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

from meeting.errors import InvalidRequest
from meeting.manager import check_id

bp = Blueprint("pages", __name__)


def _page(**extra) -> dict:
    svc = current_app.extensions["avatar"]
    domain = current_app.config["JITSI_DOMAIN"]
    return {"jitsi_domain": domain, "jitsi_script_url": svc.jitsi_script_url() if domain else "",
            "static_version": svc.static_version, **extra}


@bp.get("/")
def index():
    return render_template("index.html", page=_page())


@bp.get("/meeting/<room_id>")
def meeting(room_id: str):
    try:
        check_id("room_id", room_id)
    except InvalidRequest as exc:
        return render_template("index.html", page=_page(error=exc.message)), 400
    return render_template("meeting.html", page=_page(room_id=room_id))

