"""Who is meant by a name said in the meeting: a participant's display name, its first word ("Maria" for
"Maria Lopez"), and for Chinese names the full name, the given name, and 小/老 + the family name."""
from __future__ import annotations

import re
from collections.abc import Iterable


class People:
    def __init__(self, names: Iterable[tuple[str, str]]):
        """`names`: (user_id, display name) of everyone who was in the meeting."""
        self.names: dict[str, str] = {}
        aliases: dict[str, set[str]] = {}
        for user_id, name in names:
            self.names[user_id] = name
            for alias in _aliases(name) | {user_id.lower()}:
                aliases.setdefault(alias, set()).add(user_id)
        # an alias two people share names nobody
        self._alias = {alias: next(iter(ids)) for alias, ids in aliases.items() if len(ids) == 1}
        words = sorted(self._alias, key=len, reverse=True)
        self.pattern = re.compile("(" + "|".join(map(_bounded, words)) + ")", re.IGNORECASE) if words else None

    def resolve(self, said: str) -> str | None:
        """The user id a name as said refers to, or None."""
        return self._alias.get(said.strip().lower())

    def mentioned(self, text: str) -> list[str]:
        """User ids named in `text`, in order, each once."""
        if self.pattern is None:
            return []
        found: list[str] = []
        for m in self.pattern.finditer(text):
            user_id = self._alias.get(m.group(1).lower())
            if user_id and user_id not in found:
                found.append(user_id)
        return found

    def name(self, user_id: str | None) -> str | None:
        return None if user_id is None else self.names.get(user_id, user_id)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self.names


def _bounded(word: str) -> str:
    """A latin name is a whole word; a Chinese one stands anywhere (Chinese has no spaces)."""
    if re.search(r"[A-Za-z0-9]", word):
        return rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])"
    return re.escape(word)


def _aliases(name: str) -> set[str]:
    name = name.strip()
    out = {name.lower()}
    if re.fullmatch(r"[\u4e00-\u9fff]{2,4}", name):
        family = name[:2] if len(name) == 4 else name[:1]
        given = name[len(family):]
        out |= {f"小{family}", f"老{family}", f"{family}总", f"{family}工", f"{family}哥", f"{family}姐"}
        if len(given) >= 2:
            out.add(given)
    else:
        first = name.split()[0].lower()
        if len(first) >= 2:
            out.add(first)
    return out
