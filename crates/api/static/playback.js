// Playback: a timeline per camera over a day (recorded ranges, gaps, holds, and a GB/T 28181
// device's own recordings in another colour), zoomable to seconds; click to play every chosen
// camera from that wall-clock instant in step (up to 4), speeds 1–16, frame step, jump to a
// time; shift-drag selects a range for export or a hold.

import { api, cam, iso, mediaToken, q } from "./api.js";
import { clock, h, toast } from "./dom.js";
import { t } from "./i18n.js";
import { exportDialog, holdDialog, holdsPanel } from "./evidence.js";

const DAY = 86400e3;
const MIN_SPAN = 10e3;
/** How much one click plays: the player asks again when it reaches the end. */
const PLAY_WINDOW = 30 * 60e3;
const FRAME_S = 0.04;

const startOfDay = (ms) => { const d = new Date(ms); d.setHours(0, 0, 0, 0); return d.getTime(); };

/** One camera's row: its timeline canvas and data. */
class Row {
  constructor(screen, camera) {
    this.screen = screen;
    this.camera = camera;
    this.ranges = [];
    this.device = [];
    this.holds = [];
    this.canvas = h("canvas.timeline", { height: 42, dataset: { camera: camera.id } });
    this.el = h("div.timeline-row", {}, h("span.name", { title: camera.id }, camera.name), this.canvas,
      h("button", { onclick: () => screen.remove(camera.id) }, "×"));
    this.wireMouse();
  }

  async load(day) {
    const s = iso(day), e = iso(day + DAY);
    const rec = await api(`${cam(this.camera.id)}/recordings?${q({ start: s, end: e })}`).catch(() => ({ ranges: [] }));
    this.ranges = (rec.ranges || []).map((r) => [Date.parse(r.start), Date.parse(r.end)]);
    const dev = await api(`${cam(this.camera.id)}/device-recordings?${q({ start: s, end: e })}`).catch(() => null);
    this.device = dev ? (dev.recordings || []).map((r) => [Date.parse(r.start), Date.parse(r.end)]) : [];
    this.el.dataset.ranges = JSON.stringify(rec.ranges || []);
    this.el.dataset.device = JSON.stringify(dev ? dev.recordings || [] : []);
    this.draw();
  }

  x(ms) { const v = this.screen.view; return (ms - v[0]) / (v[1] - v[0]) * this.canvas.width; }
  at(px) { const v = this.screen.view; return v[0] + px / this.canvas.clientWidth * (v[1] - v[0]); }

  draw() {
    const c = this.canvas;
    if (c.width !== c.clientWidth && c.clientWidth) c.width = c.clientWidth;
    const g = c.getContext("2d");
    const W = c.width, H = c.height;
    // The view, for tests and tools that need the time under a pixel.
    c.dataset.v0 = String(Math.round(this.screen.view[0]));
    c.dataset.v1 = String(Math.round(this.screen.view[1]));
    g.fillStyle = "#0b0d10"; g.fillRect(0, 0, W, H);
    const css = getComputedStyle(document.documentElement);
    const bar = (list, color, y, hh) => {
      g.fillStyle = color;
      for (const [a, b] of list) {
        // Whole pixels: a short range stays visible and never blurs into the background.
        const x0 = Math.max(0, Math.floor(this.x(a))), x1 = Math.min(W, Math.ceil(this.x(b)));
        if (x1 > x0 || (x1 === x0 && x0 < W)) g.fillRect(x0, y, Math.max(1, x1 - x0), hh);
      }
    };
    bar(this.ranges, css.getPropertyValue("--ok") || "#3fb950", 10, 18);
    bar(this.device, css.getPropertyValue("--device") || "#2bb3a6", 29, 6);
    bar(this.screen.holds.filter((x) => x.camera === this.camera.id).map((x) => [Date.parse(x.start), Date.parse(x.end)]),
      css.getPropertyValue("--hold") || "#b083f0", 4, 5);
    // Ticks: a step that gives roughly 8 labels.
    const v = this.screen.view, span = v[1] - v[0];
    const steps = [1e3, 5e3, 10e3, 30e3, 60e3, 300e3, 600e3, 1800e3, 3600e3, 7200e3, 10800e3];
    const step = steps.find((s) => span / s <= 8) || 21600e3;
    g.fillStyle = "#8b94a3"; g.font = "10px sans-serif";
    for (let tt = Math.ceil(v[0] / step) * step; tt < v[1]; tt += step) {
      const x = this.x(tt);
      g.fillRect(x, 0, 1, 4);
      g.fillText(clock(tt, false).slice(0, step < 60e3 ? 8 : 5), x + 2, H - 2);
    }
    const sel = this.screen.sel;
    if (sel) { g.fillStyle = "rgba(76,141,255,.3)"; g.fillRect(this.x(sel[0]), 0, this.x(sel[1]) - this.x(sel[0]), H); }
    const now = this.screen.playhead();
    if (now) { g.fillStyle = "#fff"; g.fillRect(this.x(now), 0, 2, H); }
  }

  wireMouse() {
    const c = this.canvas;
    let down = null;
    c.addEventListener("pointerdown", (e) => {
      c.setPointerCapture(e.pointerId);
      down = { x: e.offsetX, t: this.at(e.offsetX), view: [...this.screen.view], shift: e.shiftKey, moved: false };
    });
    c.addEventListener("pointermove", (e) => {
      if (!down) return;
      if (Math.abs(e.offsetX - down.x) > 3) down.moved = true;
      if (!down.moved) return;
      if (down.shift) {
        const a = down.t, b = this.at(e.offsetX);
        this.screen.select([Math.min(a, b), Math.max(a, b)], this.camera);
      } else {
        const dt = (e.offsetX - down.x) / c.clientWidth * (down.view[1] - down.view[0]);
        this.screen.setView([down.view[0] - dt, down.view[1] - dt]);
      }
    });
    c.addEventListener("pointerup", (e) => {
      if (down && !down.moved) this.screen.play(this.at(e.offsetX));
      down = null;
    });
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const v = this.screen.view, at = this.at(e.offsetX);
      const f = e.deltaY > 0 ? 1.25 : 0.8;
      let span = Math.min(DAY, Math.max(MIN_SPAN, (v[1] - v[0]) * f));
      const left = at - (at - v[0]) * span / (v[1] - v[0]);
      this.screen.setView([left, left + span]);
    }, { passive: false });
  }
}

/** One player of the synchronised group. */
class Player {
  constructor(camera) {
    this.camera = camera;
    this.video = h("video", { muted: true, playsInline: true });
    this.video.muted = true;
    this.clockEl = h("span.clock", {}, "--:--:--.---");
    this.el = h("div.tile", { dataset: { camera: camera.id } }, this.video, h("span.cap", {}, camera.name), this.clockEl);
    this.first = null;
    this.frameMs = null;
    this.shown = null;
    const onFrame = (_, meta) => {
      if (this.first !== null) {
        const ms = this.first + meta.mediaTime * 1000;
        this.setFrame(ms);
        // The first frame presented after a seek: what the operator sees for the instant chosen.
        if (this.shown === null) { this.shown = ms; this.el.dataset.shown = String(Math.round(ms)); }
      }
      this.video.requestVideoFrameCallback(onFrame);
    };
    if (this.video.requestVideoFrameCallback) this.video.requestVideoFrameCallback(onFrame);
    // A paused seek (a frame step) may present without a frame callback: show the frame the
    // position falls in.
    this.video.addEventListener("seeked", () => {
      if (this.first !== null && this.video.paused) this.setFrame(this.first + Math.floor(this.video.currentTime / FRAME_S + 1e-6) * FRAME_S * 1000);
    });
  }

  setFrame(ms) {
    this.frameMs = ms;
    this.clockEl.textContent = clock(ms);
    this.el.dataset.frame = String(Math.round(ms));
  }

  /** Loads the recording from `at`; resolves once the first frame's wall time is known. */
  async load(at, rate) {
    const token = await mediaToken(this.camera.id, "playback");
    const end = Math.min(at + PLAY_WINDOW, Date.now());
    const url = `${cam(this.camera.id)}/playback.mp4?${q({ start: iso(at), end: iso(end), token })}`;
    // The first frame's wall time is in a header that <video> does not expose.
    const head = await fetch(url, { method: "HEAD" });
    if (!head.ok) throw new Error(`${this.camera.name}: nothing recorded from ${clock(at)}`);
    this.first = Date.parse(head.headers.get("x-sharpeye-first-frame")) || at;
    this.el.dataset.first = String(this.first);
    this.shown = null;
    delete this.el.dataset.shown;
    this.video.src = url;
    this.video.playbackRate = rate;
    this.setFrame(this.first);
  }

  /** The wall time shown now. */
  now() { return this.first === null ? null : this.first + this.video.currentTime * 1000; }
}

/** The playback screen. */
export function playbackScreen(ctx) {
  const day = h("input", { type: "date", name: "day" });
  const today = startOfDay(Date.now());
  const dd = new Date(today);
  day.value = `${dd.getFullYear()}-${String(dd.getMonth() + 1).padStart(2, "0")}-${String(dd.getDate()).padStart(2, "0")}`;
  const jump = h("input", { type: "datetime-local", step: "1", name: "jump" });
  const speed = h("select#speed", {}, ...[1, 2, 4, 8, 16].map((s) => h("option", { value: String(s) }, s + "×")));
  const playBtn = h("button#play", {}, t("pb.play"));
  const selLabel = h("span#selection.dim");
  const exportBtn = h("button#export", { disabled: true }, t("pb.export"));
  const holdBtn = h("button#hold", { disabled: true }, t("pb.holdCreate"));
  const rowsEl = h("div#timelines", {}, h("p.dim", { style: "padding: 6px 8px" }, t("pb.pick")));
  const playersEl = h("div.players#players");
  const holdsEl = h("div.panel", { style: "flex: none; max-height: 28vh" });
  const screen = {
    view: [today, today + DAY], rows: new Map(), players: [], sel: null, selCamera: null, holds: [], day: today,
    setView(v) {
      const span = Math.min(DAY * 2, Math.max(MIN_SPAN, v[1] - v[0]));
      this.view = [v[0], v[0] + span];
      this.redraw();
    },
    redraw() { for (const r of this.rows.values()) r.draw(); },
    select(s, camera) {
      this.sel = s; this.selCamera = camera;
      selLabel.textContent = t("pb.selection", { from: clock(s[0], false), to: clock(s[1], false) }) + ` · ${camera.name}`;
      exportBtn.disabled = holdBtn.disabled = false;
      this.redraw();
    },
    playhead() { return this.players[0]?.now() ?? null; },
    async add(c) {
      if (this.rows.has(c.id) || this.rows.size >= 4) return;
      if (!this.rows.size) rowsEl.replaceChildren();
      const r = new Row(this, c);
      this.rows.set(c.id, r);
      rowsEl.append(r.el);
      // The player exists as soon as its timeline does: an operator may click the new row
      // before its recordings have loaded, and that click must play this camera too.
      this.layoutPlayers();
      await r.load(this.day);
    },
    remove(id) {
      const r = this.rows.get(id);
      if (r) { r.el.remove(); this.rows.delete(id); }
      this.players = this.players.filter((p) => { if (p.camera.id === id) { p.video.src = ""; p.el.remove(); } return p.camera.id !== id; });
      this.layoutPlayers();
    },
    layoutPlayers() {
      const n = this.rows.size;
      playersEl.style.gridTemplateColumns = n > 1 ? "repeat(2, minmax(0, 1fr))" : "1fr";
      for (const r of this.rows.values()) {
        if (!this.players.some((p) => p.camera.id === r.camera.id)) {
          const p = new Player(r.camera);
          this.players.push(p);
          playersEl.append(p.el);
          this.join(p);
        }
      }
    },
    /** Plays every chosen camera from wall time `at`, in step. */
    async play(at) {
      const rate = Number(speed.value);
      try {
        await Promise.all(this.players.map((p) => p.load(at, rate)));
      } catch (e) { toast(e.message, "bad"); }
      await Promise.all(this.players.map((p) => p.video.play().catch(() => {})));
      playBtn.textContent = t("pb.pause");
    },
    /** A player added while the group plays starts at the leader's wall time. */
    async join(p) {
      const lead = this.players[0];
      const at = lead === p ? null : lead?.now();
      if (at === null || at === undefined) return;
      try {
        await p.load(at, lead.video.playbackRate);
        if (!lead.video.paused) await p.video.play().catch(() => {});
      } catch (e) { toast(e.message, "bad"); }
    },
    async reloadHolds() {
      this.holds = await api("/api/v1/holds").catch(() => []);
      holdsPanel(holdsEl, this.holds.filter((x) => this.rows.has(x.camera)), () => this.reloadHolds());
      this.redraw();
    },
  };
  // Followers stay within a few frames of the leader's wall time.
  const sync = setInterval(() => {
    const lead = screen.players[0];
    const at = lead?.now();
    if (at === null || at === undefined || lead.video.paused) { screen.redraw(); return; }
    for (const p of screen.players.slice(1)) {
      if (p.first === null) continue;
      const want = (at - p.first) / 1000;
      // This camera's recording starts later than the leader's instant: it waits on its first
      // frame (and says so) until the leader gets there, rather than running ahead of the group.
      if (want < 0) {
        if (!p.video.paused) p.video.pause();
        if (p.video.currentTime !== 0) p.video.currentTime = 0;
        p.el.dataset.waiting = "1";
        continue;
      }
      delete p.el.dataset.waiting;
      const drift = p.video.currentTime - want, rate = lead.video.playbackRate;
      // A seek stalls the picture while the decoder refills, so small drift is taken up by
      // playing a little faster or slower; only a drift past a second still seeks.
      if (Math.abs(drift) > 1) { p.video.currentTime = want; p.video.playbackRate = rate; }
      else if (Math.abs(drift) > 0.04) p.video.playbackRate = rate * (drift > 0 ? 0.9 : 1.1);
      else p.video.playbackRate = rate;
      if (p.video.paused) p.video.play().catch(() => {});
    }
    screen.redraw();
  }, 250);
  playBtn.onclick = () => {
    const ps = screen.players;
    if (!ps.length || ps[0].first === null) { screen.play(screen.sel ? screen.sel[0] : screen.view[0]); return; }
    const pause = !ps[0].video.paused;
    for (const p of ps) pause ? p.video.pause() : p.video.play().catch(() => {});
    playBtn.textContent = pause ? t("pb.play") : t("pb.pause");
  };
  speed.onchange = () => { for (const p of screen.players) p.video.playbackRate = Number(speed.value); };
  const stepBtn = h("button#step", {
    onclick: () => {
      for (const p of screen.players) {
        p.video.pause();
        // Land inside the next frame, not on its edge.
        const shown = p.frameMs === null ? p.video.currentTime : (p.frameMs - p.first) / 1000;
        p.video.currentTime = (Math.floor(shown / FRAME_S + 1e-6) + 1) * FRAME_S + FRAME_S / 2;
      }
      playBtn.textContent = t("pb.play");
    },
  }, t("pb.step"));
  jump.onchange = () => { const ms = Date.parse(jump.value); if (ms) { screen.play(ms); screen.setView([ms - 30e3, ms + 30e3]); } };
  day.onchange = async () => {
    const d = Date.parse(day.value + "T00:00:00");
    if (!d) return;
    screen.day = d; screen.view = [d, d + DAY];
    for (const r of screen.rows.values()) await r.load(d);
  };
  exportBtn.onclick = () => screen.sel && exportDialog(screen.selCamera, screen.sel);
  holdBtn.onclick = () => screen.sel && holdDialog(screen.selCamera, screen.sel, () => screen.reloadHolds());
  const toolbar = h("div.toolbar", {},
    h("label", {}, t("pb.day"), " ", day), h("label", {}, t("pb.jump"), " ", jump),
    playBtn, stepBtn, h("label", {}, t("pb.speed"), " ", speed), selLabel, exportBtn, holdBtn,
    h("span.dim", { style: "font-size: 12px" }, t("pb.help")));
  const legend = h("div.toolbar.dim", { style: "font-size: 12px" },
    h("span", { style: "color: var(--ok)" }, "■ " + t("pb.recorded")), h("span", { style: "color: var(--device)" }, "■ " + t("pb.device")),
    h("span", { style: "color: var(--hold)" }, "■ " + t("pb.hold")));
  screen.reloadHolds();
  window.addEventListener("resize", () => screen.redraw());
  return {
    el: h("div.content", {}, toolbar, legend, rowsEl, playersEl, holdsEl),
    pick(c) { screen.add(c).then(() => screen.reloadHolds()); },
    refresh() {},
    stats() {
      return screen.players.map((p, i) => ({
        tile: i, camera: p.camera.id, kind: "playback", frames: p.video.getVideoPlaybackQuality?.().totalVideoFrames ?? 0,
        frame_time: p.frameMs === null ? null : new Date(p.frameMs).toISOString(),
      }));
    },
    screen,
    destroy() { clearInterval(sync); for (const p of screen.players) p.video.src = ""; },
  };
}
