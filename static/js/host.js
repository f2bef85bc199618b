// The AI host on the meeting page: which slot it has (PRESENCE host=1), what it is doing (HOST_STATUS), its
// voice (voice.js) and its face, held back to stay in step with that voice.
import { MsgType } from "./protocol.js";
import { VoicePlayer, voiceSupported } from "./voice.js";
import { watchSound } from "./sound.js";
import { visemeMouth } from "./avatar.js";
import { t } from "./i18n.js";
import { $ } from "./ui.js";

export class HostView {
  /** `state` is the page's window.avatarMeeting.state; `grid` the AvatarGrid. */
  constructor(state, grid) {
    this.state = Object.assign(state, { hostSlot: null, hostName: "", hostStatus: { state: "", detail: "" },
      hostFaceDelayMs: 0 });
    this.grid = grid;
    this.voice = new VoicePlayer(state);
    voiceSupported().then((ok) => {
      this.voice.supported = ok;
      if (!ok) $("host-note").textContent = t("voice_unsupported");
    });
    watchSound((sound) => {                    // browsers keep audio off until the user interacts
      state.sound = sound;
      $("sound-hint").hidden = sound !== "suspended";
    });
  }

  /** After every PRESENCE: finds the host among `members` (a Map slot -> member). */
  members(members) {
    const host = [...members.values()].find((m) => m.host);
    this.state.hostSlot = host ? host.slot : null;
    this.state.hostName = host ? host.name : "";
    if (!host) this.state.hostStatus = { state: "", detail: "" };
    this.render();
  }

  isHost(slot) {
    return slot !== null && slot === this.state.hostSlot;
  }

  /** Handles AUDIO, AUDIO_END and HOST_STATUS; false for any other message. */
  handle(msg) {
    switch (msg.type) {
      case MsgType.AUDIO: this.voice.packet(msg); return true;    // tick() redraws when playing starts or stops
      case MsgType.AUDIO_END: this.voice.end(msg.reason); break;
      case MsgType.HOST_STATUS:                // shown with the voice it came with, like the face
        this.voice.face(() => {
          if (this.state.hostSlot === null) this.state.hostSlot = msg.slot;
          this.state.hostStatus = { state: msg.state, detail: msg.detail };
          this.render();
        });
        return true;
      default: return false;
    }
    this.render();
    return true;
  }

  /** A decoded POSE from the host: drawn when the audio that came with it plays. */
  pose(slot, pose) {
    this.voice.face(() => this.grid.view(slot)?.setTarget(pose));
  }

  /** A VISEME from the host: drawn at its own place on the utterance timeline. */
  viseme(msg) {
    const mouth = visemeMouth(msg.viseme, msg.weight);
    this.voice.face(() => this.grid.view(msg.slot)?.setTarget(mouth), msg.t_ms);
  }

  /** Every animation frame. */
  tick() {
    this.voice.tick();
    this.state.hostFaceDelayMs = Math.round(this.voice.faceDelayMs());
    const speaking = this.state.audioPlaying;
    if (speaking !== this.speaking) {
      this.speaking = speaking;
      this.render();
    }
  }

  statusText() {
    const { state, detail } = this.state.hostStatus;
    if (!state) return "";
    const name = this.state.hostName || t("ai_badge");
    return `${name}: ${detail || t(`host_state_${state}`)}`;
  }

  render() {
    const text = this.statusText();
    const line = $("host-status");
    line.textContent = text;
    line.hidden = !text;
    line.dataset.state = this.state.hostStatus.state;
    if (this.state.hostSlot !== null) {
      const quiet = ["listening", "idle"].includes(this.state.hostStatus.state);   // the tile shows news only
      this.grid.setNote(this.state.hostSlot, quiet ? "" : text, Boolean(this.state.audioPlaying));
    }
  }
}
