// The meeting page: join through the API, the WebSocket session, pose sending at the tier's rate,
// other participants' avatars, chat, participant list, stats, the optional Jitsi call, and the AI host
// (host.js: its status, voice and face; mic.js: this participant's microphone to it; notes.js).
import * as P from "./protocol.js";
import { PoseReceiver, PoseSender } from "./posestream.js";
import { Capture } from "./capture.js";
import { startRenderLoop, visemeMouth } from "./avatar.js";
import { setupJitsi } from "./jitsi.js";
import { applyI18n, closeReason, errorText, t } from "./i18n.js";
import { api, cleanName, leaveBeacon, saveName, savedName, userId } from "./api.js";
import { $, addChatLine, AvatarGrid, renderParticipants, renderStats, setStatus } from "./ui.js";
import { HostView } from "./host.js";
import { setupMicButton } from "./mic.js";
import { setupNotes } from "./notes.js";

const page = JSON.parse($("page-config").textContent);
const RETRY_CODES = new Set([1001, 1006, 1011, 4008, 4013]);   // worth an automatic rejoin
const MAX_RETRIES = 3;
const MAX_BUFFERED = 16 * 1024;   // skip a pose frame rather than queue behind a slow socket

const state = {
  roomId: page.room_id, userId: userId(), displayName: "", token: null,
  connected: false, mySlot: null, tier: null, closeCode: null,
  bytesReceived: 0, bytesPerSecond: 0, framesReceivedBySlot: {}, lastPoseBySlot: {},
  framesSent: 0, lastSentPose: null, participants: {},
  capture: { status: "loading", landmarks: 0, faceFrames: 0, detectMs: 0, error: "" },
  jitsi: { status: "none" }, status: { text: "", kind: "info" }, errors: [],
};

const grid = new AvatarGrid($("avatar-grid"));
const host = new HostView(state, grid);
const capture = new Capture();
const members = new Map();
let session = null;       // {ws, token, sender, receiver}
let sendTimer = null;
let retries = 0;
let leaving = false;

function status(text, kind = "info") {
  state.status = { text, kind };
  setStatus(text, kind);
}

async function join() {
  status(t("joining"));
  $("rejoin").hidden = true;
  let answer;
  try {
    answer = await api("POST", "/api/meeting/join",
      { room_id: state.roomId, user_id: state.userId, display_name: state.displayName });
  } catch (err) {
    failed(errorText(err.code, err.message));
    return;
  }
  state.tier = answer.tier ? { ...answer.tier, count: answer.tier.count ?? null } : state.tier;
  const sender = new PoseSender(state.tier?.bits ?? 8, state.tier?.fps ?? 15);
  session = { token: answer.token, sender, receiver: new PoseReceiver(), ws: null };
  state.token = answer.token;
  setupJitsi(answer.jitsi, page, state);
  connect(answer.ws_url, session);
  restartSending();
}

function failed(message) {
  status(message, "error");
  state.errors.push(message);
  $("rejoin").hidden = false;
}

function connect(wsUrl, s) {
  const url = new URL(wsUrl, location.href);
  if (url.protocol === "http:" || url.protocol === "https:") url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url.href);
  ws.binaryType = "arraybuffer";
  s.ws = ws;
  ws.onopen = () => ws.send(P.join(s.token));
  ws.onmessage = (event) => {
    if (session !== s) return;
    const size = event.data.byteLength ?? event.data.length;
    state.bytesReceived += size + (size <= 125 ? 2 : size <= 0xffff ? 4 : 10);
    try {
      handle(P.decodeServer(event.data), s);
    } catch (err) {
      console.warn("dropped a message:", err.message);
    }
  };
  ws.onclose = (event) => closed(event, s);
}

function handle(msg, s) {
  switch (msg.type) {
    case P.MsgType.WELCOME: return welcome(msg);
    case P.MsgType.TIER: return tier(msg, s);
    case P.MsgType.PRESENCE: return presence(msg);
    case P.MsgType.POSE: return poseFrom(msg, s);
    case P.MsgType.VISEME:
      if (host.isHost(msg.slot)) return host.viseme(msg);
      return grid.view(msg.slot)?.setTarget(visemeMouth(msg.viseme, msg.weight));
    case P.MsgType.CHAT: {
      const name = members.get(msg.slot)?.name ?? `#${msg.slot}`;
      return addChatLine($("chat-log"), { name, text: msg.text, ts: msg.ts_ms, ai: host.isHost(msg.slot) });
    }
    case P.MsgType.ERROR:
      state.errors.push(`${msg.code}: ${msg.message}`);
      return console.warn("server error:", msg.code, msg.message);
    default: return host.handle(msg);
  }
}

function welcome(msg) {
  state.mySlot = msg.slot;
  state.connected = true;
  state.closeCode = null;
  retries = 0;
  grid.ensure("self", { slot: msg.slot, name: state.displayName, self: true });
  status(t("connected"), "ok");
}

function tier(msg, s) {
  state.tier = { index: msg.tier, fps: msg.fps, bits: msg.bits, count: msg.count };
  s.sender.setTier(msg.fps, msg.bits);
  restartSending();
  renderStats(state);
}

function presence(msg) {
  if (msg.event === P.Presence.SNAPSHOT) {
    members.clear();
    grid.clearOthers();
  }
  for (const m of msg.members) {
    if (msg.event === P.Presence.LEFT) {
      members.delete(m.slot);
      session?.receiver.forget(m.slot);
      delete state.lastPoseBySlot[m.slot];
      grid.remove(m.slot);
      addChatLine($("chat-log"), { system: true, text: t("left_chat", { name: m.name }) });
      continue;
    }
    members.set(m.slot, m);
    if (m.slot !== state.mySlot) grid.ensure(m.slot, { slot: m.slot, name: m.name, host: m.host });
    if (msg.event === P.Presence.JOINED) addChatLine($("chat-log"), { system: true, text: t("joined_chat", { name: m.name }) });
  }
  state.participants = Object.fromEntries([...members].map(([slot, m]) => [slot, { ...m }]));
  renderParticipants($("participants"), members, state.mySlot);
  host.members(members);
}

function poseFrom(msg, s) {
  state.framesReceivedBySlot[msg.slot] = (state.framesReceivedBySlot[msg.slot] ?? 0) + 1;
  const pose = s.receiver.receive(msg.slot, msg.data);
  if (!pose) return;
  state.lastPoseBySlot[msg.slot] = pose;
  if (host.isHost(msg.slot)) host.pose(msg.slot, pose);
  else grid.view(msg.slot)?.setTarget(pose);
}

function closed(event, s) {
  if (session !== s) return;
  state.connected = false;
  state.closeCode = event.code;
  if (leaving) return;
  const message = t("closed", { code: event.code, reason: closeReason(event.code) });
  if (RETRY_CODES.has(event.code) && retries < MAX_RETRIES) {
    retries += 1;
    status(`${message} ${t("reconnecting")}`, "error");
    setTimeout(rejoin, 1000 * 2 ** (retries - 1));
  } else {
    failed(message);
  }
}

async function rejoin() {
  const old = session;
  session = null;
  if (old) {
    old.ws?.close(1000);
    await api("POST", "/api/meeting/leave", { room_id: state.roomId, user_id: state.userId, token: old.token })
      .catch(() => {});
  }
  await join();
}

async function leave() {
  leaving = true;
  const s = session;
  session = null;
  s?.ws?.close(1000);
  if (s) {
    await api("POST", "/api/meeting/leave", { room_id: state.roomId, user_id: state.userId, token: s.token })
      .catch(() => {});
  }
  location.href = "/";
}

function restartSending() {
  clearInterval(sendTimer);
  sendTimer = setInterval(sendPose, 1000 / (state.tier?.fps || 15));
}

function sendPose() {
  const pose = capture.sample(performance.now());
  grid.view("self")?.setTarget(pose);
  Object.assign(state.capture, { status: capture.status }, capture.info);
  const s = session;
  if (!s || !state.connected || s.ws.readyState !== WebSocket.OPEN || s.ws.bufferedAmount > MAX_BUFFERED) return;
  s.ws.send(P.pose(s.sender.next(pose)));
  state.lastSentPose = pose;
  state.framesSent += 1;
}

/** The microphone's packets (`kind` "audio") and its end ("end"); false when there is no open session. */
function sendAudio(kind, packet) {
  const s = session;
  if (!s || !state.connected || s.ws.readyState !== WebSocket.OPEN) return false;
  if (kind === "end") {
    s.ws.send(P.audioEnd());
  } else {
    s.ws.send(P.audio(packet.seq, packet.data));
    state.audioPacketsSent += 1;
  }
  return true;
}

function sendChat(text) {
  const clean = text.trim();
  const s = session;
  if (!clean || !s || !state.connected) return false;
  const message = [...clean].slice(0, P.MAX_CHAT_CHARS).join("");
  s.ws.send(P.chat(message));
  addChatLine($("chat-log"), { name: state.displayName, text: message, own: true });
  return true;
}

let lastBytes = 0;

function start(name) {
  state.displayName = name;
  $("name-form").hidden = true;
  grid.ensure("self", { slot: null, name, self: true });
  capture.start($("camera")).then(() => Object.assign(state.capture, { status: capture.status }, capture.info));
  setInterval(() => {
    state.bytesPerSecond = state.bytesReceived - lastBytes;
    lastBytes = state.bytesReceived;
    renderStats(state);
  }, 1000);
  startRenderLoop(() => grid.views(), () => host.tick());
  restartSending();
  join();
}

function init() {
  applyI18n();
  document.title = `${t("title")} · ${state.roomId}`;
  $("room-id").textContent = state.roomId;
  if (!page.jitsi_domain) $("video-note").textContent = t("video_not_configured");
  $("rejoin").addEventListener("click", () => { retries = 0; rejoin(); });
  setupMicButton($("mic-toggle"), $("mic-note"), state, {
    send: sendAudio,
    track: () => capture.liveAudioTrack(),
    opened: (stream) => { if (!capture.liveAudioTrack()) capture.listen(stream); },
  });
  setupNotes(state.roomId, state);
  $("leave").addEventListener("click", leave);
  $("copy-link").addEventListener("click", () => {
    navigator.clipboard?.writeText(location.origin + location.pathname).then(() => status(t("link_copied"), "ok"), () => {});
  });
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (sendChat($("chat-input").value)) $("chat-input").value = "";
  });
  window.addEventListener("pagehide", () => {
    if (session && !leaving) leaveBeacon({ room_id: state.roomId, user_id: state.userId, token: session.token });
  });
  const name = cleanName(new URLSearchParams(location.search).get("name") || savedName());
  if (name) {
    start(name);
    return;
  }
  $("name-form").hidden = false;
  $("name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = cleanName($("name-input").value);
    if (!typed) return;
    saveName(typed);
    start(typed);
  });
}

window.avatarMeeting = {
  state,
  /** Closes the socket from this side with `code`, as a network or server failure would. */
  dropConnection: (code = 4013) => session?.ws?.close(code, "test"),
  setManualPose: (pose) => capture.setManual(pose),
  clearManualPose: () => capture.setManual(null),
  sendChat,
  /** Handles `bytes` as if the server had sent them (tests drive the page with protocol messages). */
  receive: (bytes) => session && handle(P.decodeServer(bytes), session),
  leave,
  rejoin,
};
init();
