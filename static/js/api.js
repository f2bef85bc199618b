// The HTTP API (JSON in, JSON out) and the identity this tab uses with it.
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const MAX_NAME_CHARS = 64;
const USER_KEY = "avatarMeeting.userId";
const NAME_KEY = "avatarMeeting.displayName";
const AVATAR_KEY = "avatarMeeting.avatar";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

/** A random id matching ID_PATTERN, kept for this tab's session. */
export function userId() {
  let id = sessionStorage.getItem(USER_KEY);
  if (!id || !ID_PATTERN.test(id)) {
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    id = `u-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
    sessionStorage.setItem(USER_KEY, id);
  }
  return id;
}

export function savedName() {
  return sessionStorage.getItem(NAME_KEY) || localStorage.getItem(NAME_KEY) || "";
}

export function saveName(name) {
  sessionStorage.setItem(NAME_KEY, name);
  localStorage.setItem(NAME_KEY, name);
}

/** The photo avatar this person chose on the start page ("": the cartoon). */
export function savedAvatar() {
  return localStorage.getItem(AVATAR_KEY) || "";
}

export function saveAvatar(name) {
  localStorage.setItem(AVATAR_KEY, name || "");
}

/** POST a multipart form (a file upload); answers and errors as api(). */
export async function upload(path, form) {
  let response;
  try {
    response = await fetch(path, { method: "POST", body: form });
  } catch (err) {
    throw new ApiError(0, "network", err.message);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok || !data || data.success === false) {
    throw new ApiError(response.status, data?.error || "http_error", data?.message || response.statusText);
  }
  return data;
}

export function cleanName(name) {
  return [...name.trim()].slice(0, MAX_NAME_CHARS).join("");
}

/** Calls the API; throws ApiError with the server's error code (or "network"). */
export async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    throw new ApiError(0, "network", err.message);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok || !data || data.success === false) {
    throw new ApiError(response.status, data?.error || (response.status >= 500 ? "network" : "bad_request"),
      data?.message || response.statusText);
  }
  return data;
}

/** Tells the server we left, even while the page unloads. */
export function leaveBeacon(body) {
  const blob = new Blob([JSON.stringify(body)], { type: "application/json" });
  if (!navigator.sendBeacon?.("/api/meeting/leave", blob)) {
    fetch("/api/meeting/leave", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), keepalive: true }).catch(() => {});
  }
}
