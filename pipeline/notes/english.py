"""How English speakers agree, decline, commit, ask, assign, decide, propose and defer, as patterns over one
sentence. Each finder returns the words that matter (a task, a decision) or None; "" means the sentence
refers back ("I'll do it", "let's go with that")."""
from __future__ import annotations

import re

from pipeline.notes.people import People

_I = re.IGNORECASE
FILLER = re.compile(r"^(?:(?:ok(?:ay)?|so|alright|all right|right|well|great|cool|perfect|good|yes|yeah|yep|sure|fine|"
                    r"and|also|oh|um+|uh+|hmm+|then|now|honestly|actually|look|anyway|fair enough|got it|"
                    r"sounds good|that works|makes sense|great idea|good idea|agreed|in that case)\b[\s,.!:;-]*)+", _I)
_TRAIL = re.compile(r"[\s,;:]*(?:then|too|as well|ok(?:ay)?|alright|right|if that helps|if that works|for you|for us|"
                    r"by the way|"
                    r"for everyone|for the team)?\s*[.!?…]*$", _I)
REFERENTIAL = re.compile(r"^(?:(?:do|take|handle|own|take care of|cover|pick up|grab|look into|get|chase|drive|run|"
                         r"lead|deal with|sort out|sort|follow up on|follow up|finish|tackle|manage|coordinate)\s*)?"
                         r"(?:it|that|this|that one|this one|one|those|them)?\s*(?:one)?$", _I)
_ERRAND = re.compile(r"\b(?:coffee|tea|water|snacks?|lunch|breakfast|dinner|a drink|drinks|beers?|pizza|cake|biscuits|"
                     r"cookies|donuts|doughnuts|treats|bathroom|restroom|the door|the window|my dog|"
                     r"the dog|my kids?|the kids|delivery|package|parcel|refill|a break|charger|headphones|"
                     r"mute|unmute|my screen|the screen|my camera|my mic|be right back|brb|"
                     r"drop off|hop off|jump off)\b", _I)

ACCEPT = re.compile(r"^(?:agreed|i agree|agree|sounds (?:good|great|fine|like a plan)|works for me|that works|"
                    r"(?:that's |that is )?fine (?:by|with) me|i'm (?:fine|ok|okay|good|happy) with (?:that|it)|"
                    r"makes sense|good (?:idea|call|plan)|great (?:idea|call|plan)|let's do (?:it|that|this)|"
                    r"yes|yeah|yep|yup|sure|of course|absolutely|definitely|deal|ok(?:ay)?|alright|all right|"
                    r"no objections?|fair enough|i'm in|count me in|i'm on board|on board|will do|can do|on it|"
                    r"no problem|happy to|glad to|sure thing|i'm on it|\+1|same here|me too|perfect|love (?:it|that)|"
                    r"i (?:support|second) (?:that|it|this)|seconded|i can do (?:that|it)|consider it done|"
                    r"you got it|got it|done|totally|exactly|right|i'm good with that|go for it|i like (?:it|that)|"
                    r"same|love that idea|that's fine|fine)\b", _I)
REJECT = re.compile(r"^(?:no|nope|nah)\b|\b(?:i don't think|i do not think|i'd rather not|i would rather not|let's not|"
                    r"(?:that|it) won't work|doesn't work for me|i disagree|not a good idea|bad idea|too (?:expensive|"
                    r"risky|late|early|much|tight|aggressive)|i'm not (?:sure about|convinced|a fan)|i'm against|"
                    r"i can't|i cannot|i won't be able|not able to|no bandwidth|(?:i'm|i am) (?:swamped|slammed|"
                    r"out|away|off|fully booked|underwater)|can someone else|not me|push back|hard no|we can't afford|"
                    r"out of (?:the )?budget|i'll have to pass|i have to pass|pass on (?:that|this)|rather keep|"
                    r"don't have (?:the )?(?:time|capacity|bandwidth)|can't take (?:it|that|this) on|i don't want|"
                    r"i(?:'d| would) (?:skip|drop|avoid) (?:it|that|this)|i wouldn't|not worth (?:it|the)|"
                    r"i'd rather not|i'm not keen|not convinced|absolutely not|no way|i(?:'d| would) love to,? but|"
                    r"i wish i could|(?:i'm|i am) on (?:call|holiday|vacation|leave|pto)|out of (?:the )?office)\b", _I)

COMMIT = re.compile(r"\b(?:i'll|i will|i'm going to|i am going to|i'm gonna|let me|i can(?!'t|not)|i could|"
                    r"i volunteer to|i'm happy to|i am happy to|i'd be happy to|i've got|i got)\s+", _I)
_NOT_A_TASK = re.compile(r"^(?:just\b|quickly\b|be\b(?! sure| the one)|say|admit|bet|tell you|see\b|hear|live with|"
                         r"imagine|think|"
                         r"guess|know|pass\b|try not|never|not\b|also say|just say|agree|stop|go first|start\b|"
                         r"kick (?:us|it|things) off|wrap (?:us |it |things )?up|move on|recap|repeat|explain|"
                         r"summari[sz]e|jump in|share|pull (?:it|that|this) up|bring (?:it|that|this) up|"
                         r"introduce|keep (?:it|this) short|be quick|double down|add to that|chime in|"
                         r"remind (?:everyone|you all)|note that|go ahead\W*$|take notes)", _I)
REQUEST = re.compile(r"^(?:(?:can|could|would|will) you(?: please)?|please|would you mind|do you mind|"
                     r"i need you to|can you take|could you take|you(?:'ll| will)|you take|you're on|you own|"
                     r"are you (?:able|ok|okay|happy) to|any chance you could|mind)\s+(.+)$", _I)
_OPEN_REQUEST = re.compile(r"^(?:(?:can|could|would) (?:someone|somebody|anyone|one of you)(?: else)?|"
                           r"(?:we need|i need|need) (?:someone|somebody|a volunteer) to|who (?:can|could|wants to|will))"
                           r"\s+(.+)$", _I)
ASSIGN = re.compile(r"^(?:action item(?: for)?[:,-]?\s*)?(?:let's have |we'll have |i'll have |have )?(?P<name>{names})"
                    r"(?:'ll|\s+will|\s+is going to|'s going to|\s+is gonna|\s+to|\s+is on|\s+owns|\s+takes|"
                    r"\s+will own|\s+is handling|\s+handles|\s+is taking|\s+is in charge of|\s+leads|\s+will lead|"
                    r"\s+is responsible for|[:-])\s+(?P<task>.+)$", _I)
WEAK_ASSIGN = re.compile(r"^(?P<name>{names})\s+(?:can|could|should|needs to|has to|might)\s+(?P<task>.+)$", _I)
_NOT_ASSIGNED = re.compile(r"^(?:be\b|join|present|talk|say|agree|like|love|hate|know|see|hear|want|probably|"
                           r"remember|think|correct|tell|disagree|speak|answer|chime|confirm that|explain)", _I)

DECIDE = re.compile(r"\b(?:we(?:'ve| have)? (?:decided|agreed|settled on|chosen|chose|picked|landed on|signed off on|"
                    r"approved|committed to)|we(?:'re| are) (?:going|gonna go) (?:with|ahead with|to go with)|"
                    r"we(?:'ll| will) go (?:with|ahead with)|let's go (?:with|ahead (?:with|and))|let's lock|"
                    r"decision(?: is|:| made|'s made)|(?:it's|that's|so it's|then it's) (?:settled|decided|final|agreed|"
                    r"a deal|a go|locked)|(?:the )?final (?:decision|answer|call)|we(?:'re| are) (?:sticking|staying) "
                    r"with|we(?:'ll| will) (?:stick|stay) with|lock(?:ing)? (?:it |that |this )?in|consensus is|"
                    r"everyone agrees|we all agree|all agreed|is approved|are approved|green[- ]light(?:ed|ing)?|"
                    r"decided then|settled then|done deal|we're doing|we are doing|(?:so|then) we(?:'ll| will)|"
                    r"let's do (?:it|that|this)(?=\s*[:,-]\s*\w)|"
                    r"\w+ it is)\b", _I)
PROPOSE = re.compile(r"^(?:how about|what about|what if we|why don't we|why not|should we|shall we|could we|can we|"
                     r"i propose(?: that)?|i suggest(?: that)?|i'd suggest|i would suggest|my suggestion is|"
                     r"my proposal is|let's|let us|i think we should|we should|maybe we should|perhaps we should|"
                     r"maybe we|i'd say we|i vote (?:for|we)|i'd like to propose|we could|i'd recommend|i recommend|"
                     r"i'd go with|i(?:'d| would) (?:much |really )?rather|i(?:'d| would) (?:really )?like to|"
                     r"my proposal(?: is)?:?|i(?:'d| would) (?!like\b|love\b|say\b|think\b|guess\b|imagine\b|be\b|"
                     r"have\b|need\b|rather not\b|skip\b|hate\b|prefer not\b|bet\b|argue\b)(?=\w+ )|how do we feel about|"
                     r"what do you think about|are we ok with|"
                     r"are we okay with|do we want to)\b\s*(.*)$", _I)
_PROCESS = re.compile(r"^(?:start|get started|begin|move on|wrap(?: up)?|take a (?:break|look|step back)|kick off|"
                      r"go around|see|hear from|jump in|talk about|discuss|look at|review|check|circle back|"
                      r"come back|park|table|revisit|not|do (?:it|that|this)|keep (?:it|this) (?:short|quick)|"
                      r"get into|dive in|focus|recap|go over|turn to|switch to|pick (?:this|it) up|continue|"
                      r"quickly|first|also|all|try to keep)", _I)
DEFER = re.compile(r"\b(?:let's (?:park|table|revisit|come back to|circle back|take (?:it|this|that) offline|"
                   r"pick (?:it|this|that) up (?:later|next))|(?:park|table) (?:it|this|that)|parking lot|"
                   r"(?:still|remains|is) (?:open|unclear|undecided|tbd|unresolved|up in the air)|open question|"
                   r"to be (?:decided|determined|confirmed)|tbd|we(?:'ll| will) (?:need to )?(?:decide|figure (?:it|that|this) "
                   r"out|sort (?:it|that|this) out) later|(?:decide|discuss|revisit) (?:it |this |that )?(?:next time|later|"
                   r"at the next)|not sure yet|don't know yet|do not know yet|nobody knows|no one knows|no idea yet|"
                   r"no answer (?:yet|on that)|can't decide (?:today|now|yet)|hold off on deciding|no decision (?:yet|today)|"
                   r"haven't (?:decided|figured out)|need more (?:info|information|data)|come back to (?:it|this|that) "
                   r"(?:later|next)|we don't have an answer|leave (?:it|this|that) open|keep (?:it|this|that) open|"
                   r"pick (?:it|this|that) up (?:next|later|another)|follow up (?:on (?:it|this|that) )?later|"
                   r"(?:talk about|come back to|get back to) (?:it|this|that) (?:next|another) (?:week|time|meeting)|"
                   r"(?:don't|do not) have an answer)\b", _I)
UNKNOWN_REPLY = re.compile(r"^(?:i (?:don't|do not) know|no idea|not sure|i'm not sure|good question|"
                           r"hard to say|who knows|no clue|unclear|nobody knows|no one knows)\b", _I)
_QUESTION_WORD = re.compile(r"^(?:what|which|who|whom|whose|when|where|why|how|is|are|was|were|do|does|did|can|"
                            r"could|should|shall|will|would|have|has|any)\b", _I)
_SENTENCE = re.compile(r"(?<=[.!?…])\s+|\s+[-–—]\s+|;\s+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def clean(text: str) -> str:
    """Without leading fillers ("OK so") and trailing punctuation."""
    text = FILLER.sub("", text.strip())
    return _TRAIL.sub("", text).strip(" ,")


def capital(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def is_question(s: str) -> bool:
    return s.rstrip().endswith("?")


def accepts(s: str) -> bool:
    return bool(ACCEPT.match(s.strip().lstrip("(").lower())) and not rejects(s)


def rejects(s: str) -> bool:
    return not is_question(s) and bool(REJECT.search(s.strip()))


def errand(s: str) -> bool:
    return bool(_ERRAND.search(s))


def unknown_reply(s: str) -> bool:
    return bool(UNKNOWN_REPLY.match(clean_start(s)))


def clean_start(s: str) -> str:
    return FILLER.sub("", s.strip())


def commitment(s: str) -> str | None:
    """What the speaker commits to do ("" when it refers back: "I'll do it"), or None."""
    if is_question(s) and not re.search(r"\bi(?:'ll| will)\b", s, _I):
        return None
    m = COMMIT.search(s)
    if not m:
        return None
    before = s[:m.start()].lower()
    if re.search(r"\b(?:if|unless|whether|wish|hope|think)\b[^,]*$", before) or before.rstrip().endswith("what"):
        return None
    rest = s[m.end():]
    if _NOT_A_TASK.match(rest):
        return None
    rest = re.sub(r"^(?:also|just|then|definitely|probably|go ahead and|make sure (?:to|that i)|be sure to|try to|"
                  r"take care of|handle|own|take|do|get)\s+(?=\S)", lambda x: x.group(0) if
                  x.group(0).strip().lower() in ("take care of", "handle", "own", "take", "do", "get") else "", rest,
                  flags=_I)
    if _NOT_A_TASK.match(rest):
        return None
    task = clean_task(rest)
    return "" if REFERENTIAL.match(task) else task


_CLAUSE_END = re.compile(r"(?:,\s*|\s+)(?:and\s+)?(?:you(?:'ll|'re| will| can)|we(?:'ll|'re| will| can)|they(?:'ll| will|"
                         r" need)|it(?:'ll| will)|he|she|i'm|since|because|so that|so|which|but|as|just to|"
                         r"in case|otherwise|while)\b.*$", _I)


def clean_task(text: str) -> str:
    """A task's words: up to the end of its clause ("…, you'll have it tomorrow" is not the task)."""
    text = _CLAUSE_END.sub("", text.strip())
    text = _TRAIL.sub("", text).strip(" ,")
    text = re.sub(r",?\s*(?:if that's ok|if that works|if you want|if needed|please)$", "", text, flags=_I)
    return text


def request(s: str, people: People) -> tuple[str | None, str] | None:
    """(the user id asked, or None for "someone", the task) for a request, or None."""
    body, owner = s.strip(), None
    m = re.match(r"^(?:hey\s+|and\s+|so\s+|ok(?:ay)?\s+)?([^\s,:]+(?:\s[^\s,:]+)?)\s*[,:]\s*(.+)$", body)
    if m and (uid := people.resolve(m.group(1))):
        owner, body = uid, m.group(2)
    else:
        tail = re.match(r"^(.+?),\s*([^\s,]+(?:\s[^\s,]+)?)\s*[?.!]*$", body)
        if tail and (uid := people.resolve(tail.group(2))):
            owner, body = uid, tail.group(1) + ("?" if body.rstrip().endswith("?") else "")
    body = clean_start(body)
    if owner is None and (o := _OPEN_REQUEST.match(body)):
        return None, clean_task(o.group(1))
    r = REQUEST.match(body)
    if not r:
        return None
    task = clean_task(r.group(1))
    if owner is None and body.lower().startswith(("you'll", "you will", "please", "mind")):
        return None                                  # "you'll see …", "please note …": not asking anyone
    if _NOT_A_TASK.match(task) or _NOT_ASSIGNED.match(task) or not task:
        return None
    return owner, task


def assignment(s: str, people: People) -> tuple[str, str, bool] | None:
    """(the user id given the task, the task, firm) for "Tom will …", "let's have Tom …", "Tom can …"."""
    if people.pattern is None:
        return None
    body = clean_start(s)
    for pattern, firm in ((ASSIGN, True), (WEAK_ASSIGN, False)):
        m = re.match(pattern.pattern.replace("{names}", people.pattern.pattern), body, _I)
        if m and (uid := people.resolve(m.group("name"))):
            task = clean_task(m.group("task"))
            if task and not _NOT_ASSIGNED.match(task) and not _NOT_A_TASK.match(task) and not is_question(s):
                return uid, task, firm
    return None


def decision(s: str) -> str | None:
    """What was decided ("" when it refers back: "let's go with that"), or None."""
    if is_question(s):
        return None
    m = DECIDE.search(s)
    if not m:
        return None
    text = clean(s)
    rest = clean(s[m.end():])
    if REFERENTIAL.match(rest) or re.fullmatch(r"(?:then|it|that|this|so)?", rest, _I):
        return ""
    if re.match(r"^\s*:", s[m.end():]):                # "That's decided: $11.99 for new users …"
        return capital(clean(s[m.end():].lstrip(" :")))
    return capital(text)


REFERRING = re.compile(r"\b(?:the plan|that plan|this plan|that|this|it|we|us|all|everyone|then|so|ok|okay|fine|"
                       r"works|agreed|good|great|sounds|is|are|the|a|an|with|for|to|go|do|let's)\b", _I)


_CONFIRM = re.compile(r"^(?P<claim>.{12,}?),?\s+(?:right|correct|yes|ok|okay|agreed|no)\?$", _I)


def proposal(s: str) -> str | None:
    """What a sentence proposes ("how about we …", "I'd …", "X, right?"), or None."""
    body = clean_start(s)
    if (confirm := _CONFIRM.match(body)) is not None:
        return capital(clean_task(confirm.group("claim")))
    m = PROPOSE.match(body)
    if not m:
        return None
    rest = m.group(1)
    if _PROCESS.match(rest) or not rest.strip():
        return None
    text = clean_task(rest)
    text = re.sub(r"^(?:we|that we|to)\s+", "", text, flags=_I)
    return capital(text) if len(text.split()) >= 2 else None


def deferral(s: str) -> str | None:
    """An open question the sentence leaves ("" when it defers what was just asked), or None."""
    m = DEFER.search(s)
    if not m:
        return None
    topic = re.search(r"\b(?:the|this|that|our|which|whether|what|who|how|when|where)\b.{6,}", s[:m.start()] + s[m.end():],
                      _I)
    if is_question(s):
        return capital(clean(s)) + "?"
    asks = re.search(r"\b(?:whether|which|what|who|how|when|where|if)\b", s, _I)
    return capital(clean(s)) if topic and asks and len(clean(s).split()) >= 6 else ""


def open_question(s: str) -> bool:
    """A real question put to the others (not a request, not a proposal)."""
    body = clean_start(s)
    clauses = [c.strip() for c in re.split(r"[:,;]", body)]
    return is_question(s) and any(_QUESTION_WORD.match(c) for c in clauses) and len(body.split()) >= 4 \
        and not _CONFIRM.match(body)


def is_referential(task: str) -> bool:
    return bool(REFERENTIAL.match(task.strip()))


def leans_on_context(task: str) -> bool:
    """A task whose object is a pronoun ("update it"): it needs the sentence it refers to."""
    return bool(re.search(r"\b(?:it|that|this|them|those|these)\b", task, _I))


is_referential_task = is_referential


def strip_accept(text: str) -> str:
    return FILLER.sub("", text)
