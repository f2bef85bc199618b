"""The meeting core's typed errors; each has a stable `code` that the API and the protocol report."""


class MeetingError(Exception):
    code = "meeting_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class RoomExists(MeetingError):
    code = "room_exists"


class RoomNotFound(MeetingError):
    code = "room_not_found"


class RoomFull(MeetingError):
    code = "room_full"


class UserAlreadyInRoom(MeetingError):
    code = "user_already_in_room"


class NotInRoom(MeetingError):
    code = "not_in_room"


class InvalidRequest(MeetingError):
    code = "bad_request"
