// The meeting's notes panel: the transcript (GET /api/meeting/<id>/transcript) and the AI host's summary
// (GET /api/meeting/<id>/summary), fetched when asked for.
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

function summaryBody(answer) {
  const parts = [el("p", { className: "summary-text" }, answer.summary || t("summary_empty"))];
  if (answer.generated_at) parts.push(el("p", { className: "note" }, t("generated_at", { time: clock(answer.generated_at) })));
  parts.push(el("p", { className: "note tip" }, t("summary_tip")));
  return parts;
}

/** Wires the Transcript and Summary buttons of the notes panel to `roomId`'s endpoints. */
export function setupNotes(roomId, state) {
  const out = $("notes-output");
  const base = `/api/meeting/${encodeURIComponent(roomId)}`;
  state.notes = { shown: "", lines: 0, summary: "" };
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
        out.replaceChildren(el("h3", {}, t("summary")), ...summaryBody(answer));
        state.notes = { shown: kind, lines: state.notes.lines, summary: answer.summary || "" };
      }
      const list = out.querySelector("ol");
      if (list) list.scrollTop = list.scrollHeight;
    } catch (err) {
      out.replaceChildren(el("p", { className: "note error" }, t("notes_failed", { message: errorText(err.code, err.message) })));
    }
  }
  $("show-transcript").addEventListener("click", () => show("transcript"));
  $("show-summary").addEventListener("click", () => show("summary"));
}
