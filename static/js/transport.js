// The page's two ways to the server, with one surface: WebRTC data channels first ("control": reliable and
// ordered; "pose": unordered, never retransmitted, so a lost frame is replaced rather than waited for), the
// WebSocket when WebRTC cannot connect within RTC_CONNECT_MS. docs/PROTOCOL.md describes both.
//
// A transport: kind ("webrtc" | "websocket"), send(bytes, pose), canSend(pose) (room for a pose frame),
// isOpen(), close(code), and the
// handlers it was given: open(), message(bytes) for each message (a BUNDLE already unpacked), close({code, reason}).
import * as P from "./protocol.js";
import { api } from "./api.js";

export const RTC_CONNECT_MS = 3000;
const MAX_BUFFERED = 16 * 1024;        // skip a pose frame rather than queue behind a slow channel
const DATAGRAM_OVERHEAD = 60;          // IP, UDP, DTLS and SCTP around a data-channel message (for the stats)
const WS_HEADER = (n) => (n <= 125 ? 2 : n <= 0xffff ? 4 : 10);

export class WsTransport {
  constructor(wsUrl, handlers) {
    const url = new URL(wsUrl, location.href);
    if (url.protocol === "http:" || url.protocol === "https:") url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    this.kind = "websocket";
    this.ws = new WebSocket(url.href);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => handlers.open();
    this.ws.onmessage = (event) => {
      const size = event.data.byteLength ?? event.data.length;
      handlers.message(event.data, size + WS_HEADER(size));
    };
    this.ws.onclose = (event) => handlers.close({ code: event.code, reason: event.reason });
  }

  canSend() {
    return this.isOpen() && this.ws.bufferedAmount <= MAX_BUFFERED;
  }

  isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(bytes) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  close(code = 1000, reason = "") {
    this.ws.close(code, reason);
  }
}

export class RtcTransport {
  /** Resolves once the control channel is open; rejects when WebRTC cannot connect within `timeoutMs`. */
  static async connect(rtc, token, handlers, timeoutMs = RTC_CONNECT_MS) {
    const t = new RtcTransport(rtc, handlers);
    try {
      await Promise.race([t.#open(token), new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`WebRTC did not connect within ${timeoutMs} ms`)), timeoutMs))]);
    } catch (err) {
      t.#shut();
      throw err;
    }
    return t;
  }

  constructor(rtc, handlers) {
    this.kind = "webrtc";
    this.handlers = handlers;
    this.done = false;
    this.pc = new RTCPeerConnection({ iceServers: rtc.ice_servers || [] });
    this.rtcUrl = rtc.url;
    this.control = this.pc.createDataChannel("control", { ordered: true });
    this.pose = this.pc.createDataChannel("pose", { ordered: false, maxRetransmits: 0 });
    for (const channel of [this.control, this.pose]) {
      channel.binaryType = "arraybuffer";
      channel.onmessage = (event) => this.#receive(event.data);
    }
    this.pc.onconnectionstatechange = () => {
      if (["failed", "closed"].includes(this.pc.connectionState)) this.#ended({ code: 1006, reason: "connection lost" });
    };
    this.control.onclose = () => this.#ended({ code: 1006, reason: "channel closed" });
  }

  async #open(token) {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await new Promise((resolve) => {            // one request: the offer carries every ICE candidate
      if (this.pc.iceGatheringState === "complete") return resolve();
      this.pc.addEventListener("icegatheringstatechange", () => {
        if (this.pc.iceGatheringState === "complete") resolve();
      });
      setTimeout(resolve, 1500);                 // a STUN server that never answers must not hold us up
    });
    const answer = await api("POST", this.rtcUrl, { token, sdp: this.pc.localDescription.sdp, type: "offer" });
    await this.pc.setRemoteDescription(answer);
    if (this.control.readyState !== "open") {
      await new Promise((resolve, reject) => {
        this.control.onopen = resolve;
        this.control.onerror = () => reject(new Error("the data channel failed"));
      });
    }
    this.opened = true;
    this.handlers.open();
  }

  #receive(data) {
    const size = data.byteLength ?? data.length;
    let messages;
    try {
      messages = P.decodeServer(data);
    } catch (err) {
      this.handlers.message(data, size + DATAGRAM_OVERHEAD);    // let the page report it as it does for the WebSocket
      return;
    }
    if (messages.type === P.MsgType.BYE) {
      this.#ended({ code: messages.code, reason: messages.reason });
      return;
    }
    if (messages.type !== P.MsgType.BUNDLE) {
      this.handlers.message(data, size + DATAGRAM_OVERHEAD);
      return;
    }
    messages.messages.forEach((m, i) => this.handlers.message(m, m.length + (i === 0 ? DATAGRAM_OVERHEAD : 2)));
  }

  canSend(pose) {
    const channel = pose ? this.pose : this.control;
    return !this.done && channel.readyState === "open" && channel.bufferedAmount <= MAX_BUFFERED;
  }

  isOpen() {
    return !this.done && this.control.readyState === "open";
  }

  send(bytes, pose = false) {
    const channel = pose && this.pose.readyState === "open" ? this.pose : this.control;
    if (!this.done && channel.readyState === "open") channel.send(bytes);
  }

  close(code = 1000, reason = "") {
    this.#shut();
    this.#ended({ code, reason });
  }

  #shut() {
    this.done = true;
    try { this.pc.close(); } catch (err) { /* already closed */ }
  }

  #ended(event) {
    if (this.ended) return;
    this.ended = true;
    if (!this.opened) return;                    // a connection that never opened is the caller's failure
    this.#shut();
    this.handlers.close(event);
  }
}
