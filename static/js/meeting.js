// The meeting page: join through the API, the data channel (WebRTC, or the WebSocket: transport.js), pose
// sending at the tier's rate,
// other participants' avatars, chat, participant list, stats, the optional Jitsi call, and the AI host
// (host.js: its status, voice and face; mic.js: this participant's microphone to it; notes.js).
import * as P from "./protocol.js";
import { PoseReceiver, PoseSender } from "./posestream.js";
import { Capture } from "./capture.js";
import { startRenderLoop, visemeMouth } from "./avatar.js";
import { setupJitsi } from "./jitsi.js";
import { applyI18n, closeReason, errorText, t } from "./i18n.js";
import { api, cleanName, leaveBeacon, saveName, savedAvatar, savedName, userId } from "./api.js";
import { $, addChatLine, AvatarGrid, renderParticipants, renderStats, setStatus } from "./ui.js";
import { HostView } from "./host.js";
import { setupMicButton } from "./mic.js";
import { setupNotes } from "./notes.js";
import { RtcTransport, WsTransport } from "./transport.js";

const page = JSON.parse($("page-config").textContent);
const RETRY_CODES = new Set([1001, 1006, 1011, 1012, 4008, 4013]);   // worth an automatic rejoin
const MAX_RETRIES = 20;                      // with backoff: about 30 s of trying

/** Exponential backoff with jitter, so a restarted server is not hit by every page at the same moment. */
function backoffMs(attempt) {
  // at most 2.4 s apart: a restarted server has everyone back within 3 s of listening again
  return Math.min(1600, 250 * 2 ** attempt) * (0.5 + Math.random());
}
// ?transport=websocket skips WebRTC (the server may also have it off: its join answer then has no "rtc")
const FORCE_WS = new URLSearchParams(location.search).get("transport") === "websocket";

const state = {
  roomId: page.room_id, userId: userId(), displayName: "", token: null,
  connected: false, mySlot: null, tier: null, closeCode: null, reconnects: 0,
  bytesReceived: 0, bytesPerSecond: 0, framesReceivedBySlot: {}, lastPoseBySlot: {},
  framesSent: 0, lastSentPose: null, participants: {}, recording: null,
  capture: { status: "loading", landmarks: 0, faceFrames: 0, detectMs: 0, error: "" },
  jitsi: { status: "none" }, status: { text: "", kind: "info" }, errors: [],
  transport: null, rtcError: null, tickAligned: false,
};

const grid = new AvatarGrid($("avatar-grid"));
const host = new HostView(state, grid);
const capture = new Capture();
const members = new Map();
let session = null;       // {transport, token, sender, receiver}
let sendTimer = null;
let sendGrid = null;      // over WebRTC: {origin, period} (ms, performance.now()) from the server's TICK
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
      { room_id: state.roomId, user_id: state.userId, display_name: state.displayName,
        ...(savedAvatar() ? { avatar: savedAvatar() } : {}) });
  } catch (err) {
    if (retries > 0 && (err.code === "network" || err.code === "draining") && retries < MAX_RETRIES) {
      return retryLater(t("reconnecting"));             // the server is restarting: try again
    }
    if (retries > 0 && err.code === "room_not_found") return failed(t("meeting_ended_restart"));
    failed(errorText(err.code, err.message));
    return;
  }
  state.tier = answer.tier ? { ...answer.tier, count: answer.tier.count ?? null } : state.tier;
  const sender = new PoseSender(state.tier?.bits ?? 8, state.tier?.fps ?? 15);
  session = { token: answer.token, sender, receiver: new PoseReceiver(), transport: null, answer, resume: "" };
  state.token = answer.token;
  setupJitsi(answer.jitsi, page, state);
  await connect(answer, session);
  restartSending();
}

function failed(message) {
  status(message, "error");
  state.errors.push(message);
  $("rejoin").hidden = false;
}

/** WebRTC when the server offers it and it connects within RTC_CONNECT_MS, else the WebSocket. */
async function connect(answer, s) {
  const handlers = {
    open: () => s.transport?.send(P.join(s.token)),
    message: (data, wireBytes) => {
      if (session !== s) return;
      state.bytesReceived += wireBytes;
      try {
        handle(P.decodeServer(data), s);
      } catch (err) {
        console.warn("dropped a message:", err.message);
      }
    },
    close: (event) => closed(event, s),
  };
  if (answer.rtc && !FORCE_WS && typeof RTCPeerConnection === "function") {
    try {
      s.transport = await RtcTransport.connect(answer.rtc, s.token, {
        ...handlers, open: () => {} });
      if (session !== s) return s.transport.close(1000);
      state.transport = "webrtc";
      renderStats(state);
      s.transport.send(P.join(s.token));
      return;
    } catch (err) {
      state.rtcError = String(err.message || err);
      console.info("WebRTC did not connect, using the WebSocket:", state.rtcError);
      if (session !== s) return;
    }
  }
  state.transport = "websocket";
  s.transport = new WsTransport(answer.ws_url, handlers);
  renderStats(state);
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
    case P.MsgType.TICK: return tick(msg);
    case P.MsgType.RECORDING: return recording(msg);
    case P.MsgType.ERROR:
      state.errors.push(`${msg.code}: ${msg.message}`);
      return console.warn("server error:", msg.code, msg.message);
    default: return host.handle(msg);
  }
}

/** The meeting is being recorded (or no longer): a red badge for everyone while it runs. */
function recording(msg) {
  state.recording = msg.on ? { started_ms: msg.started_ms, by: msg.by } : null;
  const badge = $("rec-badge");
  badge.hidden = !msg.on;
  badge.textContent = msg.on ? t("recording_by", { name: msg.by }) : "";
  const button = $("record");
  button.textContent = t(msg.on ? "stop_recording" : "record");
  button.setAttribute("aria-pressed", String(msg.on));
}

async function toggleRecording() {
  if (!session) return;
  const action = state.recording ? "stop" : "start";
  try {
    await api("POST", `/api/meeting/${encodeURIComponent(state.roomId)}/recording`, { token: session.token, action });
  } catch (err) {
    status(String(err.message || err), "error");
  }
}

function welcome(msg) {
  state.resumed = Boolean(session?.resuming);            // back in our own place, unseen
  if (session) Object.assign(session, { resume: msg.resume, resuming: false });
  state.mySlot = msg.slot;
  state.connected = true;
  $("participants").classList.remove("stale");
  state.closeCode = null;
  retries = 0;
  grid.ensure("self", { slot: msg.slot, name: state.displayName, self: true, avatar: savedAvatar() });
  status(t("connected"), "ok");
}

function tier(msg, s) {
  state.tier = { index: msg.tier, fps: msg.fps, bits: msg.bits, count: msg.count };
  s.sender.setTier(msg.fps, msg.bits);
  if (sendGrid && Math.abs(sendGrid.period - 1000 / msg.fps) > 0.5) sendGrid = null;   // until the next TICK
  restartSending();
  renderStats(state);
}

/** The server sends the room's frames out on a fixed beat: send poses just before it, so they leave at once. */
function tick(msg) {
  sendGrid = { origin: performance.now() + (msg.next_in_us - msg.lead_us) / 1000, period: msg.period_us / 1000 };
  state.tickAligned = true;
  restartSending();
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
    if (m.slot !== state.mySlot) grid.ensure(m.slot, { slot: m.slot, name: m.name, host: m.host, avatar: m.avatar });
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
  $("participants").classList.add("stale");
  if (leaving) return;
  const message = t("closed", { code: event.code, reason: closeReason(event.code) });
  if ((event.code === 1006 || event.code === 1012) && s.resume && retries < MAX_RETRIES) {
    // the network dropped us, or the server restarts: back into our place (with Redis it kept it; without, the
    // resume gets 4004 and the rejoin below tells that the meeting ended)
    return resumeLater(s, `${message} ${t("reconnecting")}`);
  }
  if (s.resuming && [4003, 4004, 4009].includes(event.code) && retries < MAX_RETRIES) {
    return retryLater(`${message} ${t("reconnecting")}`);              // the place is gone: join anew
  }
  if (RETRY_CODES.has(event.code) && retries < MAX_RETRIES) {
    retryLater(`${message} ${t("reconnecting")}`);
  } else {
    failed(message);
  }
}

/** Back into our own place with the resume token from WELCOME: the others never see us leave. */
function resumeLater(old, message) {
  retries += 1;
  state.reconnects += 1;
  status(message, "error");
  setTimeout(async () => {
    if (session !== old || leaving) return;
    const s = { ...old, token: old.resume, resume: old.resume, resuming: true, receiver: new PoseReceiver(),
      transport: null };
    session = s;
    await connect(old.answer, s);
    restartSending();
  }, retries === 1 ? 100 : backoffMs(retries - 1));
}

function retryLater(message) {
  retries += 1;
  state.reconnects += 1;
  status(message, "error");
  setTimeout(rejoin, backoffMs(retries - 1));
}

async function rejoin() {
  const old = session;
  session = null;
  sendGrid = null;
  restartSending();
  if (old) {
    old.transport?.close(1000);
    await api("POST", "/api/meeting/leave", { room_id: state.roomId, user_id: state.userId, token: old.token })
      .catch(() => {});
  }
  await join();
}

async function leave() {
  leaving = true;
  const s = session;
  session = null;
  s?.transport?.close(1000);
  if (s) {
    await api("POST", "/api/meeting/leave", { room_id: state.roomId, user_id: state.userId, token: s.token })
      .catch(() => {});
  }
  location.href = "/";
}

function restartSending() {
  clearInterval(sendTimer);
  clearTimeout(sendTimer);
  if (sendGrid && session?.transport?.kind === "webrtc") {
    sendInStep();
  } else {
    sendTimer = setInterval(sendPose, 1000 / (state.tier?.fps || 15));
  }
}

function sendInStep() {
  if (!sendGrid) return restartSending();
  const { origin, period } = sendGrid;
  const now = performance.now();
  const next = origin + Math.ceil((now + 0.5 * period - origin) / period) * period;   // at least half a period on
  sendTimer = setTimeout(() => { sendPose(); sendInStep(); }, next - now);
}

function sendPose() {
  const pose = capture.sample(performance.now());
  grid.view("self")?.setTarget(pose);
  Object.assign(state.capture, { status: capture.status }, capture.info);
  const s = session;
  if (!s || !state.connected || !s.transport?.canSend(true)) return;
  s.transport.send(P.pose(s.sender.next(pose)), true);
  state.lastSentPose = pose;
  state.framesSent += 1;
}

/** The microphone's packets (`kind` "audio") and its end ("end"); false when there is no open session. */
function sendAudio(kind, packet) {
  const s = session;
  if (!s || !state.connected || !s.transport?.isOpen()) return false;
  if (kind === "end") {
    s.transport.send(P.audioEnd());
  } else {
    s.transport.send(P.audio(packet.seq, packet.data));
    state.audioPacketsSent += 1;
  }
  return true;
}

function sendChat(text) {
  const clean = text.trim();
  const s = session;
  if (!clean || !s || !state.connected) return false;
  const message = [...clean].slice(0, P.MAX_CHAT_CHARS).join("");
  s.transport.send(P.chat(message));
  addChatLine($("chat-log"), { name: state.displayName, text: message, own: true });
  return true;
}

let lastBytes = 0;

function start(name) {
  state.displayName = name;
  $("name-form").hidden = true;
  grid.ensure("self", { slot: null, name, self: true, avatar: savedAvatar() });
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
  $("record").addEventListener("click", toggleRecording);
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
  dropConnection: (code = 4013) => session?.transport?.close(code, "test"),
  setManualPose: (pose) => capture.setManual(pose),
  clearManualPose: () => capture.setManual(null),
  sendChat,
  /** Handles `bytes` as if the server had sent them (tests drive the page with protocol messages). */
  receive: (bytes) => session && handle(P.decodeServer(bytes), session),
  leave,
  rejoin,
};
init();
