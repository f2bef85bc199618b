// The few DOM helpers every page uses (no dependencies, so the start page can have them without the avatars).

export const $ = (id) => document.getElementById(id);

/** The status line; `kind` is "info", "ok" or "error". */
export function setStatus(text, kind = "info") {
  const status = $("status");
  status.textContent = text;
  status.dataset.kind = kind;
}
