// The start page's agenda editor: rows of a topic and its minutes, sent with "create" for the AI host.
import { t } from "./i18n.js";

const MAX_ITEMS = 20;
const MAX_TITLE_CHARS = 200;

export class AgendaError extends Error {}

export class AgendaEditor {
  constructor(list, addButton) {
    this.list = list;
    this.addButton = addButton;
    addButton.addEventListener("click", () => this.add().querySelector("input").focus());
  }

  /** Appends a row and returns it. */
  add(title = "", minutes = "") {
    const row = document.createElement("li");
    row.className = "agenda-row";
    const name = Object.assign(document.createElement("input"), {
      className: "agenda-title", maxLength: MAX_TITLE_CHARS, placeholder: t("agenda_topic"), value: title,
    });
    name.setAttribute("aria-label", t("agenda_topic"));
    const mins = Object.assign(document.createElement("input"), {
      className: "agenda-minutes", type: "number", min: "0", step: "any", placeholder: t("agenda_minutes"),
      value: String(minutes),
    });
    mins.setAttribute("aria-label", t("agenda_minutes"));
    const remove = Object.assign(document.createElement("button"), {
      type: "button", className: "small agenda-remove", textContent: "✕", title: t("agenda_remove"),
    });
    remove.setAttribute("aria-label", t("agenda_remove"));
    remove.addEventListener("click", () => {
      row.remove();
      this.addButton.disabled = false;
    });
    row.append(name, mins, remove);
    this.list.append(row);
    this.addButton.disabled = this.list.children.length >= MAX_ITEMS;
    return row;
  }

  /** The agenda as [{title, minutes}]; rows left wholly empty are skipped. Throws AgendaError. */
  read() {
    const items = [];
    for (const row of this.list.children) {
      const title = row.querySelector(".agenda-title").value.trim();
      const raw = row.querySelector(".agenda-minutes").value.trim();
      if (!title && !raw) continue;
      const minutes = Number(raw);
      if (!title || !raw || !Number.isFinite(minutes) || minutes <= 0) {
        row.querySelector(title ? ".agenda-minutes" : ".agenda-title").focus();
        throw new AgendaError(t("bad_agenda"));
      }
      items.push({ title, minutes });
    }
    return items;
  }
}
