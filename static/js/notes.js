// The meeting's notes panel: the transcript (GET /api/meeting/<id>/transcript) and the minutes
// (GET /api/meeting/<id>/minutes: summary, decisions, action items, open questions), fetched when asked for.
import { api } from "./api.js";
import { errorText, t } from "./i18n.js";
import { $, el } from "./ui.js";

/** A time from the API: Unix seconds (or milliseconds, or an ISO string) as a clock time; small numbers
 * are seconds from the start of the meeting, shown as m:ss. */
function clock(value) {
  const hm = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (typeof value === "string") return Number.isNaN(Date.parse(value)) ? value : hm(Date.parse(value));
  if (typeof value !== "number" || !Number.isFinite(value)) return "";
  if (value > 1e12) return hm(value);
  if (value > 1e9) return hm(value * 1000);
  const s = Math.max(0, Math.round(value));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function transcriptLines(lines) {
  if (!lines.length) return [el("p", { className: "note" }, t("transcript_empty"))];
  const list = el("ol", { className: "transcript" });
  for (const line of lines) {
    const item = el("li", {}, el("time", {}, clock(line.t)), el("b", {}, line.name || line.speaker),
      el("span", {}, line.text));
    item.dataset.source = line.source;
    item.title = t(`source_${line.source}`);
    list.append(item);
  }
  return [list];
}

const cite = (lines = []) => el("span", { className: "cite" },
  t(lines.length === 1 ? "cited_line" : "cited_lines", { lines: lines.join(", ") }));

function section(title, items, render) {
  const body = items.length ? el("ul", {}, ...items.map((item) => el("li", {}, ...render(item))))
    : el("p", { className: "note" }, t("none_yet"));
  return [el("h4", {}, title), body];
}

function minutesBody(answer, markdownUrl) {
  const parts = [el("p", { className: "summary-text" }, answer.summary || t("summary_empty"))];
  parts.push(...section(t("decisions"), answer.decisions || [], (d) => [d.text, " ", cite(d.source_lines)]));
  parts.push(...section(t("action_items"), answer.action_items || [], (a) => [
    el("b", {}, a.owner || t("owner_unknown")), ": ", a.task,
    a.due ? el("span", { className: "due" }, ` · ${t("due", { due: a.due })}`) : "", " ", cite(a.source_lines)]));
  parts.push(...section(t("open_questions"), answer.open_questions || [], (q) => [q.text, " ", cite(q.source_lines)]));
  const footer = el("p", { className: "note" });
  if (answer.generated_at) footer.append(t("generated_at", { time: clock(answer.generated_at) }), " · ");
  footer.append(el("a", { href: markdownUrl, download: "" }, t("download_markdown")));
  parts.push(footer, el("p", { className: "note tip" }, t("summary_tip")));
  return parts;
}

/** Wires the Transcript and Summary buttons of the notes panel to `roomId`'s endpoints. */
export function setupNotes(roomId, state) {
  const out = $("notes-output");
  const base = `/api/meeting/${encodeURIComponent(roomId)}`;
  state.notes = { shown: "", lines: 0, summary: "", decisions: 0, actionItems: 0 };
  async function show(kind) {
    out.hidden = false;
    out.replaceChildren(el("p", { className: "note" }, t("notes_loading")));
    out.dataset.kind = kind;
    try {
      const answer = await api("GET", `${base}/${kind}`);
      if (kind === "transcript") {
        out.replaceChildren(el("h3", {}, t("transcript")), ...transcriptLines(answer.lines || []));
        state.notes = { shown: kind, lines: (answer.lines || []).length, summary: state.notes.summary };
      } else {
        out.replaceChildren(el("h3", {}, t("minutes")), ...minutesBody(answer, `${base}/minutes?format=markdown`));
        state.notes = { ...state.notes, shown: kind, summary: answer.summary || "",
          decisions: (answer.decisions || []).length, actionItems: (answer.action_items || []).length };
      }
      const list = out.querySelector("ol");
      if (list) list.scrollTop = list.scrollHeight;
    } catch (err) {
      out.replaceChildren(el("p", { className: "note error" }, t("notes_failed", { message: errorText(err.code, err.message) })));
    }
  }
  $("show-transcript").addEventListener("click", () => show("transcript"));
  $("show-minutes").addEventListener("click", () => show("minutes"));
}
