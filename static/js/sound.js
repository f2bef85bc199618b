// The page's one AudioContext (48 kHz: the rate of every Opus packet both ways). Browsers start it
// suspended until the user interacts with the page, so the first click or key press resumes it.
export const SAMPLE_RATE = 48000;

let ctx = null;
const watchers = new Set();

function resume() {
  if (ctx && ctx.state === "suspended") ctx.resume().catch(() => {});
}

/** The shared AudioContext, created on first use. */
export function audioContext() {
  if (!ctx) {
    ctx = new AudioContext({ sampleRate: SAMPLE_RATE, latencyHint: "interactive" });
    ctx.addEventListener("statechange", () => { for (const fn of watchers) fn(ctx.state); });
    // capture phase: a button that stops propagation (the join button, the mic toggle) still counts
    for (const type of ["pointerdown", "keydown", "click"]) document.addEventListener(type, resume, true);
  }
  return ctx;
}

/** Calls `fn(state)` now and whenever the context is suspended, resumed or closed. */
export function watchSound(fn) {
  watchers.add(fn);
  fn(audioContext().state);
}

/** True when WebCodecs has `codec` (AudioEncoder or AudioDecoder, possibly missing) for `config`. */
export async function codecSupports(codec, config) {
  if (typeof codec !== "function") return false;
  try {
    return Boolean((await codec.isConfigSupported(config)).supported);
  } catch {
    return false;
  }
}
