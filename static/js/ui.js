// The meeting page's DOM: avatar tiles, participant list, chat log, stats and the status line.
import { AvatarView, paletteFor } from "./avatar.js";
import { $ } from "./dom.js";
import { t } from "./i18n.js";
import { PhotoAvatarView } from "./photoavatar.js";

export { $, setStatus } from "./dom.js";

const CANVAS_SIZE = 360;

export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

/** One tile per participant in the avatar grid, keyed by slot ("self" for this tab before WELCOME). */
export class AvatarGrid {
  constructor(root) {
    this.root = root;
    this.tiles = new Map();     // key -> {figure, canvas, caption, view}
  }

  /** `avatar`: the name of the participant's photo avatar, drawn instead of the cartoon (the AI host has one only
   *  when its room was given `host_avatar`: otherwise its robot); null or "": the cartoon; left out: as before. */
  ensure(key, { slot, name, host = false, self = false, avatar }) {
    let tile = this.tiles.get(key);
    if (!tile) {
      const canvas = el("canvas", { width: CANVAS_SIZE, height: CANVAS_SIZE });
      const caption = el("figcaption");
      const badge = el("span", { className: "badge", hidden: true }, t("ai_badge"));
      const note = el("span", { className: "tile-status", hidden: true });
      const figure = el("figure", { className: "tile" }, canvas, badge, note, caption);
      if (self) {
        figure.classList.add("self");
        this.root.prepend(figure);
      } else {
        this.root.append(figure);
      }
      tile = { figure, canvas, caption, badge, note, view: new AvatarView(canvas, paletteFor(slot ?? 0, host)) };
      this.tiles.set(key, tile);
    }
    const drawn = tile.view.avatarName ?? null;
    const photo = avatar === undefined ? drawn : avatar || null;
    if (photo !== drawn) {
      const view = photo ? new PhotoAvatarView(tile.canvas, tile.view.palette, photo)
        : new AvatarView(tile.canvas, tile.view.palette);
      Object.assign(view, { current: tile.view.current, target: tile.view.target });
      tile.view = view;
    }
    if (slot !== undefined && slot !== null) {
      tile.canvas.dataset.slot = String(slot);
      tile.figure.dataset.slot = String(slot);
      tile.view.palette = paletteFor(slot, host);
      tile.view.dirty = true;
    }
    tile.figure.classList.toggle("host", host);
    tile.badge.hidden = !host;
    tile.caption.textContent = self ? `${name} (${t("you")})` : name;   // the AI host has its badge
    tile.figure.title = host ? t("host") : "";
    return tile;
  }

  remove(key) {
    const tile = this.tiles.get(key);
    if (tile) tile.figure.remove();
    this.tiles.delete(key);
  }

  clearOthers() {
    for (const key of [...this.tiles.keys()]) if (key !== "self") this.remove(key);
  }

  /** The small line over a tile (the AI host's status); empty hides it. `speaking` marks the tile. */
  setNote(key, text, speaking = false) {
    const tile = this.tiles.get(key);
    if (!tile) return;
    tile.note.textContent = text;
    tile.note.hidden = !text;
    tile.figure.classList.toggle("speaking", speaking);
  }

  view(key) {
    return this.tiles.get(key)?.view ?? null;
  }

  views() {
    return Array.from(this.tiles.values(), (tile) => tile.view);
  }
}

export function renderParticipants(list, members, mySlot) {
  list.replaceChildren(...[...members.values()].sort((a, b) => a.slot - b.slot).map((m) => {
    const item = el("li", { className: "participant" }, el("span", { className: "dot" }), m.name);
    item.dataset.slot = String(m.slot);
    item.title = m.user_id;
    if (m.slot === mySlot) item.append(el("span", { className: "tag" }, t("you")));
    if (m.host) item.append(el("span", { className: "tag host" }, t("host")));
    return item;
  }));
}

/** One chat line: a participant's (`own` for this tab's, `ai` for the AI host's) or a system notice. */
export function addChatLine(log, { name, text, ts, system = false, own = false, ai = false }) {
  const time = new Date(ts ?? Date.now()).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const className = own ? "own" : ai ? "ai" : "";
  const item = system
    ? el("li", { className: "system" }, text)
    : el("li", { className }, el("time", {}, time), el("b", {}, name), el("span", {}, text));
  log.append(item);
  while (log.children.length > 200) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

/** The stats panel: tier, received byte rate, capture mode. */
export function renderStats(state) {
  const tier = state.tier;
  $("stat-tier").textContent = tier ? `${tier.index} · ${tier.fps} ${t("fps")} · ${tier.bits} ${t("bits")}` : "–";
  $("stat-received").textContent = formatRate(state.bytesPerSecond);
  const transport = $("stat-transport");
  transport.textContent = state.transport ? t(`transport_${state.transport}`) : "–";
  transport.dataset.transport = state.transport || "";
  transport.title = state.transport === "websocket" && state.rtcError ? t("rtc_fallback", { reason: state.rtcError }) : "";
  const capture = state.capture.status;
  $("stat-capture").textContent = t(`capture_${capture === "no_face" ? "idle" : capture}`) +
    (capture === "no_face" ? ` (${t("no_face")})` : "");
}

export function formatRate(bytesPerSecond) {
  if (bytesPerSecond < 1000) return `${Math.round(bytesPerSecond)} B/s`;
  return `${(bytesPerSecond / 1000).toFixed(1)} kB/s`;
}
