"""How Chinese speakers agree, decline, commit, ask, assign, decide, propose and defer (the same finders as
`english`). Chinese puts the object first as often as not ("测试用例我来写"), so a task is the verb phrase
with the topic that came before it."""
from __future__ import annotations

import re

from pipeline.notes.dates import strip_due
from pipeline.notes.people import People

_SENTENCE = re.compile(r"(?<=[。！？!?；;…])\s*")
_CLAUSE = re.compile(r"[，,：:]")
_LEAD = re.compile(r"^(?:(?:那么|那就|好的|好吧|好啊|行吧|嗯+|哦+|对了|另外|还有|然后|其实|可以|没问题|同意)[，,、\s]*|"
                   r"那(?![个些边里天时么])|(?:好|行|对|OK|ok)[，,、\s]+)")
_ERRAND = re.compile(r"咖啡|倒水|倒杯水|喝水|接水|续杯|外卖|快递|吃饭|午饭|晚饭|早饭|洗手间|厕所|抽烟|接孩子|窗户|关窗|关门|"
                     r"耳机|充电|静音|信号|拉面|奶茶|买单")

STRONG_ACCEPT = re.compile(r"^(?:同意|我同意|我也同意|都同意|赞成|没问题|没意见|我没意见|可以可以|可以|我觉得可以|我觉得行|"
                           r"就这么办|支持|好主意|没毛病|我这边(?:也)?(?:OK|ok|可以|没问题)|能接受|我这边能接受|包在我身上|"
                           r"交给我|放心|行|能|好的|收到|OK|ok|没事|妥|中)")
WEAK_ACCEPT = re.compile(r"^(?:好|嗯|对|是的|是|明白|了解|那行|也行|好啊|行啊)")
REJECT = re.compile(r"不行|不同意|不太好|不太合适|不合适|算了|还是不要|不要了|我反对|不现实|太贵|太冒险|不划算|排不下|塞不下|"
                    r"接不了|顾不过来|忙不过来|来不及|没时间|没空|做不了|搞不定|出不来|动静太大|没法|先别|不建议|不太行|"
                    r"恐怕不行|有点悬|够呛|不干|不上了|不做了|别搞|没必要")
_COMMIT_HEAD = re.compile(r"我(?:们组|们这边|这边|们)?(?P<when>(?:[^，,。！？我]{0,12}?(?:之前|以前|前|内|底))?"
                          r"(?:今天|明天|后天|下午|上午|晚上|马上|尽快|回头|先|就|也|会|再|一会儿|等会|待会)*)"
                          r"(?P<verb>来|负责|去|跟进|会|把|改|写|发|做|出|排|弄|整理|准备|联系|确认|安排|更新|修|加|补|"
                          r"提交|约|拉|对一下|查|问|给|同步|落实|调|测|评估|处理|催|订|预订|设计|汇总|统计|起草|梳理|对接|"
                          r"搞定|搞|申请|组织|通知|沟通|核对|提供|交|画|录|剪|定|谈|盯|推进|走|重写|补充|收集|"
                          r"拟|列|写好|整理好)")
_NOT_COMMIT = re.compile(r"^我(?:们)?(?:觉得|认为|同意|理解|建议|想|先说|也觉得|没|不|倾向|个人|看|记得|知道|站|最|还是|刚|"
                         r"是|有|就在家|带|这边也可以|也可以|插一句|去爬|去了)")
_MODAL = re.compile(r"能不能|可不可以|要不要|可以|能|帮忙|麻烦|一下|再|先|就|吧|吗|呢|呀|啊|了|着|[？?！!。]")
REQUEST_MARK = re.compile(r"你(?:们组|们)?|能不能|可不可以|麻烦|帮忙|一下|[吧吗？?]$")
_OPEN_REQUEST = re.compile(r"^(?:谁|哪位|有没有人)(?:来|能|可以|愿意|负责|去)(.+)")
ASSIGN = re.compile(r"(?P<lead>让|请|由|交给|安排)(?P<name>{names})(?:来|去)?(?P<task>负责|跟进|.{1,30})")
ASSIGN_BY_NAME = re.compile(r"^(?P<name>{names})(?P<task>负责.+|来负责.+|跟进.+|来跟进.+)")
DECIDE = re.compile(r"决定|就这么定|这么定了|定了|定下来了|敲定|拍板|就按这个来|就按(?:这个|这|那个|你说的|这个方案)?来|"
                    r"就这么办|没商量|达成一致|一致同意|都同意的话|最终定|确定了|就这样定|定为|那就用|就用这个")
PROPOSE = re.compile(r"^(?:我建议|建议|我提议|我有个提议|有个提议|提议|要不要|要不|不如|干脆|我倾向于|我倾向|我们可以|咱们可以|"
                     r"我觉得还是|我觉得应该|我觉得我们|我想(?:提议|建议)|这样[，,]|我的想法是|我们要不要|要不要|是不是可以|"
                     r"能不能)")
PROPOSE_TAIL = re.compile(r"(?:怎么样|行不行|可以吗|好不好|大家觉得呢|你们觉得呢|大家看呢|如何|同意吧|都同意吧)[？?]?$")
DEFER = re.compile(r"下次再议|下次再说|下次再讨论|下次再聊|再议|以后再说|后面再说|回头再说|再说吧|等.{1,20}再说|先放一放|"
                   r"先放着|先搁置|待定|还没定|先不定|今天先不定|定不了|没有结论|暂时没结论|还不确定|还要再确认|需要再确认|"
                   r"先记下来|拿不准|说不准|说不好|不好说|不清楚|不知道|没想好")
UNKNOWN_REPLY = re.compile(r"不知道|不清楚|说不好|说不准|拿不准|不好说|不确定|没想好|定不了|没数")
_QUESTION = re.compile(r"[？?]$|吗$|呢$")
_WH = re.compile(r"什么|谁|哪|几|多少|怎么|为什么|是否|有没有|会不会|要不要|能不能|是不是|可不可以")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def clean(text: str) -> str:
    text = text.strip()
    while (m := _LEAD.match(text)) and m.end() > 0:
        text = text[m.end():]
    return text.rstrip("。！!；;，, ")


def capital(text: str) -> str:
    return text


def is_question(s: str) -> bool:
    return bool(_QUESTION.search(s.strip()))


def errand(s: str) -> bool:
    return bool(_ERRAND.search(s))


def _first_clause(s: str) -> str:
    return _CLAUSE.split(s.strip(), maxsplit=1)[0]


def accepts(s: str) -> bool:
    head = _first_clause(s)
    if REJECT.search(head) or head.startswith("不"):
        return False
    return bool(STRONG_ACCEPT.match(head)) or (bool(WEAK_ACCEPT.match(head)) and len(s.strip("。！!，, ")) <= 4)


def rejects(s: str) -> bool:
    return not is_question(s) and bool(REJECT.search(s))


def unknown_reply(s: str) -> bool:
    return bool(UNKNOWN_REPLY.search(s)) and not is_question(s)


def leans_on_context(task: str) -> bool:
    """A task too short to stand alone ("改完"): it needs the sentence it refers to."""
    return len(task) <= 2 or bool(re.search(r"这个|那个|它", task))


REFERRING = re.compile(r"这个方案|这个|那个|这样|大家|我们|咱们|方案|可以|没问题|同意|行|好|吧|都")


def is_referential(task: str) -> bool:
    return len(task) <= 2 or task in ("这个", "那个", "这块", "这件事", "这事")


is_referential_task = is_referential


def clean_task(text: str) -> str:
    text = _MODAL.sub("", text).strip("，,、 ")
    text = re.sub(r"(?<=[\u4e00-\u9fff])\s+|\s+(?=[\u4e00-\u9fff])", "", text)
    return re.sub(r"^(?:们组|们)", "", text)


def _topic(prefix: str) -> str:
    prefix = clean(prefix)
    prefix = re.sub(r"(?:这块|这个|那个|这边|的话)$", "", prefix)
    return "" if prefix in ("", "这", "那") else prefix


def _join(verb_phrase: str, topic: str) -> str:
    verb_phrase, topic = clean_task(verb_phrase), clean_task(topic)
    if not topic:
        return verb_phrase
    if len(verb_phrase) <= 2:
        return verb_phrase + topic                     # 写 + 测试用例
    return f"{topic}，{verb_phrase}"


def commitment(s: str) -> str | None:
    """What the speaker commits to ("" when it refers back: "我来"), or None."""
    if is_question(s):
        return None
    clauses = [c for c in _CLAUSE.split(s) if c.strip()]
    for i, clause in enumerate(clauses):
        body = clean(clause)
        at = body.find("我")
        if at < 0:
            continue
        m = _COMMIT_HEAD.match(body, at)
        if not m or _NOT_COMMIT.match(body[at:]) or re.match(r"[了过]|不[了到出来]", body[m.end():]) \
                or re.search(r"[^为除]了$", body):
            continue                                 # done already ("查了"), or cannot be done ("定不了")
        verb = m.group("verb")
        rest = body[m.end():] if verb in ("来", "负责", "去", "跟进", "会", "把") else verb + body[m.end():]
        if verb == "把":
            rest = "把" + body[m.end():]
        earlier = clauses[i - 1] if i else ""
        topic = _topic(body[:at]) or (_topic(earlier) if len(clean(earlier)) >= 4 and not accepts(earlier)
                                     and not REJECT.search(earlier) else "")
        task = _join(rest, topic)
        return "" if is_referential(task) else task
    return None


def request(s: str, people: People) -> tuple[str | None, str] | None:
    """(the user id asked, or None for "谁来…", the task) for a request, or None."""
    body = clean(s)
    if (o := _OPEN_REQUEST.match(body)) is not None:
        return None, clean_task(o.group(1))
    m = re.match(r"^(?:麻烦|请)?([^，,、\s]{1,4})[，,、\s]\s*(.+)$", body)
    if not m or (owner := people.resolve(m.group(1))) is None:
        m2 = re.match(r"^麻烦([^，,、\s]{2,4}?)(?:你)?(.+)$", body)
        if not m2 or (owner := people.resolve(m2.group(1))) is None:
            return None
        rest = m2.group(2)
    else:
        rest = m.group(2)
    if not (REQUEST_MARK.search(rest) or is_question(s)):
        return None
    if re.search(r"你(?:们)?(?:觉得|看|说|那边|先讲|先说|讲讲|说说)|怎么看|什么|几个|哪|多少|怎么分|怎么样|有没有", rest):
        return None                                  # asking for an opinion or a fact, not for work
    you = re.search(r"你(?:们组|们)?", rest)
    topic, verb_phrase = (rest[:you.start()], rest[you.end():]) if you else ("", rest)
    verb_phrase = _first_clause(strip_due(verb_phrase, "zh")) or verb_phrase
    task = _join(verb_phrase, _topic(topic))
    return (owner, task) if task else None


def assignment(s: str, people: People) -> tuple[str, str, bool] | None:
    """(the user id given the task, the task, firm): "让小陈跟进", "这块交给王芳", "要不让马超排吧" (not firm)."""
    if people.pattern is None:
        return None
    names = people.pattern.pattern
    body = clean(s)
    for pattern in (ASSIGN, ASSIGN_BY_NAME):
        m = re.search(pattern.pattern.replace("{names}", names), body, re.IGNORECASE)
        if m and (uid := people.resolve(m.group("name"))):
            task = clean_task(re.split(r"[，,。]", m.group("task"))[0])
            task = re.sub(r"^(?:来|去)", "", task)
            topic = _topic(body[:m.start()])
            firm = not re.search(r"要不|不如|可以让|能不能|行不行|吧$", body) and not is_question(s)
            return uid, _join(task, re.sub(r"(?:要不|不如|可以)$", "", topic)), firm
    return None


def decision(s: str) -> str | None:
    """What was decided ("" when it refers back: "就按这个来"), or None."""
    if is_question(s):
        return None
    m = DECIDE.search(s)
    if not m:
        return None
    text = clean(re.sub(r"(?:大家)?没意见的话|(?:大家)?都同意的话", "", s))
    rest = clean(re.sub(DECIDE.pattern, "", text))
    rest = re.sub(r"^(?:了|吧|那|就|我们|咱们)+", "", rest)
    if len(rest) < 4:
        return ""
    text = re.sub(r"^(?:那就|那么|那|我们)?(?:就这么定了|这么定了|决定)[：:，,]?", "", text) or text
    return re.sub(r"[，,]?(?:那就|就)?(?:这么定了|就这么定|就这么办|就按这个来)[吧了。]*$", "", text).rstrip("吧，, ")


def proposal(s: str) -> str | None:
    body = clean(s)
    m = PROPOSE.match(body)
    tail = PROPOSE_TAIL.search(body)
    if not m and not tail:
        return None
    text = body[m.end():] if m else body[:tail.start()]
    text = re.sub(r"^(?:于|我们|咱们|也)", "", clean(text)).rstrip("？?，,")
    return text if len(text) >= 4 else None


def deferral(s: str) -> str | None:
    m = DEFER.search(s)
    if not m:
        return None
    if is_question(s):
        return clean(s)
    before = clean(s[:m.start()])
    return before if len(before) >= 8 and _WH.search(before) else ""


def open_question(s: str) -> bool:
    body = clean(s)
    return is_question(s) and bool(_WH.search(body)) and len(body) >= 6


def strip_accept(text: str) -> str:
    """Without a leading "我觉得行，" / "可以，": what is added to what was accepted."""
    head = _first_clause(text)
    if accepts(head) or re.fullmatch(r"我觉得(?:行|可以|没问题)|我没意见|大家没意见", head):
        return text[len(head):].lstrip("，,：: ")
    return text
