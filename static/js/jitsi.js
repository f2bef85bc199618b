// Jitsi Meet next to the avatars, through its IFrame API (external_api.js from the configured server).
import { t } from "./i18n.js";

/** Where the meeting's Jitsi room is, from the join answer or the page's configuration; null if none. */
export function jitsiSettings(joinJitsi, page, roomId) {
  if (joinJitsi && joinJitsi.domain) {
    return {
      domain: joinJitsi.domain,
      roomName: joinJitsi.room_name || roomId,
      scriptUrl: joinJitsi.script_url || `https://${joinJitsi.domain}/external_api.js`,
    };
  }
  if (page.jitsi_domain) {
    return {
      domain: page.jitsi_domain,
      roomName: roomId,
      scriptUrl: page.jitsi_script_url || `https://${page.jitsi_domain}/external_api.js`,
    };
  }
  return null;
}

function loadScript(src) {
  if (window.JitsiMeetExternalAPI) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.async = true;
    script.onload = () => resolve();
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.appendChild(script);
  });
}

/** Loads the IFrame API and opens the room inside `parentNode`; resolves to the API object. */
export async function mountJitsi(settings, parentNode, displayName) {
  await loadScript(settings.scriptUrl);
  if (typeof window.JitsiMeetExternalAPI !== "function") throw new Error("JitsiMeetExternalAPI is missing");
  return new window.JitsiMeetExternalAPI(settings.domain, {
    roomName: settings.roomName,
    parentNode,
    width: "100%",
    height: "100%",
    userInfo: { displayName },
  });
}

let mounted = false;

/** Shows the call (once per page) if the join answer or the page configures one; `state.jitsi` follows it. */
export async function setupJitsi(joinJitsi, page, state) {
  if (mounted) return;
  mounted = true;
  const settings = jitsiSettings(joinJitsi, page, state.roomId);
  const note = document.getElementById("video-note");
  if (!settings) {
    note.textContent = t("video_not_configured");
    state.jitsi = { status: "none" };
    return;
  }
  document.body.classList.add("with-video");
  note.textContent = t("video_loading");
  state.jitsi = { status: "loading", ...settings };
  try {
    state.jitsi.api = await mountJitsi(settings, document.getElementById("jitsi"), state.displayName);
    state.jitsi.status = "ready";
    note.hidden = true;
  } catch (err) {
    state.jitsi.status = "failed";
    note.textContent = `${t("video_failed")} (${err.message})`;
  }
}
