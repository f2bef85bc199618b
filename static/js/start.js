// The start page: choose a display name, then create a room (with its language, AI host and agenda) or
// join one by its id.
import { applyI18n, errorText, lang, t } from "./i18n.js";
import { AgendaEditor, AgendaError } from "./agenda.js";
import { api, cleanName, ID_PATTERN, saveAvatar, savedAvatar, saveName, savedName, upload, userId } from "./api.js";
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

/** The photo avatars on offer, the person's choice kept for the meeting page (which joins with it). */
async function loadAvatars(select = savedAvatar()) {
  let list = [];
  try {
    list = (await api("GET", "/api/avatar/list")).avatars;
  } catch {
    return;                                           // no avatar service: the cartoon only
  }
  const box = $("avatar-choice");
  box.querySelectorAll("option[value]:not([value=''])").forEach((o) => o.remove());
  for (const a of list) box.add(new Option(a.name, a.name));
  box.value = list.some((a) => a.name === select) ? select : "";
  chooseAvatar();
}

function chooseAvatar() {
  const name = $("avatar-choice").value;
  saveAvatar(name);
  const img = $("avatar-preview");
  img.hidden = !name;
  if (name) img.src = `/api/avatar/preview/${encodeURIComponent(name)}`;
}

async function uploadPhoto() {
  const file = $("avatar-file").files[0];
  if (!file) return;
  const base = (cleanName($("display-name").value) || "me").normalize("NFKD").replace(/[^A-Za-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "").slice(0, 40) || "me";
  const form = new FormData();
  form.append("name", `${base}-${Math.random().toString(36).slice(2, 7)}`);
  form.append("prompt_face", file);
  status(t("reading_photo"));
  const made = await upload("/api/avatar/create", form);
  status(made.warnings?.length ? made.warnings.join(" ") : t("photo_ready"), "ok");
  await loadAvatars(made.name);
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
$("avatar-choice").addEventListener("change", chooseAvatar);
$("avatar-file").addEventListener("change", () => busy(uploadPhoto));
loadAvatars();
$("start-form").addEventListener("submit", (event) => {
  event.preventDefault();
  busy(join);
});
window.avatarStart = { ready: true };
