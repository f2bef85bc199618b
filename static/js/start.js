// The start page: choose a display name, then create a room (with its language, AI host and agenda) or
// join one by its id.
import { applyI18n, errorText, lang, t } from "./i18n.js";
import { AgendaEditor, AgendaError } from "./agenda.js";
import { api, cleanName, ID_PATTERN, saveName, savedName, userId } from "./api.js";
import { $, setStatus as status } from "./dom.js";


function readName() {
  const name = cleanName($("display-name").value);
  if (!name) {
    status(t("need_name"), "error");
    $("display-name").focus();
    return null;
  }
  saveName(name);
  return name;
}

function readRoom(required) {
  const room = $("room-id").value.trim();
  if (!room && required) {
    status(t("need_room"), "error");
    $("room-id").focus();
    return null;
  }
  if (room && !ID_PATTERN.test(room)) {
    status(t("bad_room_id"), "error");
    return null;
  }
  return room;
}

function go(room) {
  location.href = `/meeting/${encodeURIComponent(room)}`;
}

async function busy(work) {
  document.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  try {
    await work();
  } catch (err) {
    status(err instanceof AgendaError ? err.message : errorText(err.code, err.message), "error");
  } finally {
    document.querySelectorAll("button").forEach((b) => { b.disabled = false; });
  }
}

async function create() {
  const room = readRoom(false);
  if (!readName() || room === null) return;
  status(t("creating"));
  const agenda = agendaEditor.read();
  const body = { user_id: userId(), language: $("language").value, host: $("host-enabled").checked };
  if (room) body.room_id = room;
  if (agenda.length) body.agenda = agenda;
  const answer = await api("POST", "/api/meeting/create", body);
  go(answer.room_id);
}

async function join() {
  const room = readRoom(true);
  if (!readName() || !room) return;
  status(t("checking"));
  await api("GET", `/api/meeting/${encodeURIComponent(room)}`);
  go(room);
}

applyI18n();
document.title = t("title");
const page = JSON.parse($("page-config").textContent);
if (page.error) status(page.error, "error");
$("display-name").value = savedName();
$("language").value = lang;
const agendaEditor = new AgendaEditor($("agenda-rows"), $("agenda-add"));
agendaEditor.add();
const params = new URLSearchParams(location.search);
if (params.get("room")) $("room-id").value = params.get("room");
$("create").addEventListener("click", () => busy(create));
$("start-form").addEventListener("submit", (event) => {
  event.preventDefault();
  busy(join);
});
window.avatarStart = { ready: true };
