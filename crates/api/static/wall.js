// The video wall: layouts of 1 to 36 tiles, cameras dragged from the tree (or clicked) onto
// tiles, double-click to enlarge, tours (轮巡), saved views, PTZ on an enlarged tile, and the
// kiosk screen at /wall/{id} that follows what `PUT /api/v1/walls/{id}` pushes.

import { api, follow } from "./api.js";
import { dialog, h, toast } from "./dom.js";
import { t } from "./i18n.js";
import { Tile, wallSize } from "./player.js";

/** Layout name → [tile count, grid columns, big tile span]. The API's names (docs/api.md). */
export const LAYOUTS = {
  "1": [1, 1, 1], "2x2": [4, 2, 1], "1+5": [6, 3, 2], "1+7": [8, 4, 3],
  "3x3": [9, 3, 1], "4x4": [16, 4, 1], "5x5": [25, 5, 1], "6x6": [36, 6, 1],
};

/** A wall of tiles inside `host`. `cameras()` returns the current camera listing by id. */
export class Wall {
  constructor(host, cameras) {
    this.host = host;
    this.cameras = cameras;
    this.tiles = [];
    this.layout = "2x2";
    this.assigned = [];
    this.tour = null;
    this.tourTimer = null;
    this.tourStep = 0;
    this.setLayout("2x2");
  }

  /** Switches layout, keeping the cameras in reading order. */
  setLayout(name) {
    if (!LAYOUTS[name]) return;
    const [n, cols, span] = LAYOUTS[name];
    this.layout = name;
    this.host.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
    this.host.style.gridTemplateRows = `repeat(${cols}, minmax(0, 1fr))`;
    while (this.tiles.length > n) { const tl = this.tiles.pop(); tl.destroy(); tl.el.remove(); }
    while (this.tiles.length < n) this.addTile();
    this.tiles.forEach((tl, i) => {
      tl.el.style.gridColumn = i === 0 && span > 1 ? `span ${span}` : "";
      tl.el.style.gridRow = i === 0 && span > 1 ? `span ${span}` : "";
    });
    this.host.dataset.layout = name;
    wallSize(n);
  }

  addTile() {
    const index = this.tiles.length;
    const el = h("div.tile", { dataset: { index } });
    const tile = new Tile(el, { index, onClose: (tl) => this.put(tl.index, null) });
    el.addEventListener("dragover", (e) => { e.preventDefault(); el.classList.add("drop"); });
    el.addEventListener("dragleave", () => el.classList.remove("drop"));
    el.addEventListener("drop", (e) => {
      e.preventDefault();
      el.classList.remove("drop");
      const id = e.dataTransfer.getData("text/x-camera");
      if (id) this.put(tile.index, id);
    });
    el.addEventListener("dblclick", () => this.enlarge(tile));
    this.host.append(el);
    this.tiles.push(tile);
  }

  /** Puts camera `id` (or nothing) on tile `i`. */
  put(i, id, stream = null) {
    const tile = this.tiles[i];
    if (!tile) return;
    const c = id ? this.cameras().get(id) : null;
    tile.show(c || (id ? { id, name: id, streams: ["main"], status: "offline" } : null), stream);
    tile.el.querySelector(".ptz")?.remove();
  }

  /** The first tile without a camera (for click-to-add). */
  firstFree() { return this.tiles.findIndex((tl) => !tl.camera); }

  enlarge(tile) {
    const big = tile.el.classList.toggle("big");
    tile.el.querySelector(".ptz")?.remove();
    const c = tile.camera;
    if (big && c && (c.actions || []).includes("ptz")) tile.el.append(ptzPad(c.id));
  }

  /** Shows a layout: {layout, tiles:[{camera, stream?}], tour?}. */
  apply(l) {
    this.stopTour();
    this.setLayout(l.layout);
    this.tiles.forEach((tl, i) => {
      const spec = (l.tiles || [])[i];
      this.put(i, spec && spec.camera ? spec.camera : null, spec?.stream || null);
    });
    if (l.tour) this.startTour(l.tour);
  }

  /** The layout shown, in the API's form. */
  current() {
    const tiles = this.tiles.map((tl) => tl.camera ? (tl.want ? { camera: tl.camera.id, stream: tl.want } : { camera: tl.camera.id }) : { camera: "" });
    while (tiles.length && !tiles[tiles.length - 1].camera) tiles.pop();
    return { layout: this.layout, tiles, ...(this.tour ? { tour: this.tour } : {}) };
  }

  /** A tour: `tile` cycles through `cameras`, or (no tile) the wall pages through them. */
  startTour(tour) {
    this.stopTour();
    this.tour = tour;
    this.tourStep = 0;
    const step = () => {
      const cams = tour.cameras;
      if (tour.tile !== undefined && tour.tile !== null) {
        this.put(tour.tile, cams[this.tourStep % cams.length]);
      } else {
        const n = this.tiles.length;
        const pageStart = (this.tourStep * n) % cams.length;
        this.tiles.forEach((_, i) => this.put(i, i < cams.length ? cams[(pageStart + i) % cams.length] : null));
      }
      this.tourStep++;
    };
    step();
    this.tourTimer = setInterval(step, Math.max(1, tour.every_s) * 1000);
  }

  stopTour() { clearInterval(this.tourTimer); this.tourTimer = null; this.tour = null; }

  /** New camera states: tiles learn of offline/online without reloading. */
  refresh() {
    for (const tl of this.tiles) {
      if (!tl.camera) continue;
      const c = this.cameras().get(tl.camera.id);
      if (c) tl.camera = c;
    }
  }

  stats() { return this.tiles.map((tl) => tl.stats()); }

  destroy() { this.stopTour(); for (const tl of this.tiles) tl.destroy(); this.host.replaceChildren(); }
}

/** A PTZ pad: press to move, release to stop, with a speed slider. */
function ptzPad(camera) {
  const speed = h("input", { type: "range", min: "1", max: "255", value: "128", title: t("ptz.speed") });
  const move = (pan, tilt, zoom) => api(`/api/v1/cameras/${encodeURIComponent(camera)}/ptz`, {
    method: "POST", body: { pan, tilt, zoom, speed: Number(speed.value) },
  }).catch((e) => toast(e.message, "bad"));
  const b = (label, p, tl, z) => h("button", {
    onpointerdown: (e) => { e.stopPropagation(); move(p, tl, z); },
    onpointerup: () => move(0, 0, 0), ondblclick: (e) => e.stopPropagation(),
  }, label);
  return h("div.ptz", { ondblclick: (e) => e.stopPropagation() },
    b("↖", -1, 1, 0), b("↑", 0, 1, 0), b("↗", 1, 1, 0),
    b("←", -1, 0, 0), b("+", 0, 0, 1), b("→", 1, 0, 0),
    b("↙", -1, -1, 0), b("↓", 0, -1, 0), b("↘", 1, -1, 0),
    b("-", 0, 0, -1), speed);
}

/** The tour dialog: cameras ticked in order, seconds on each, whole wall or one tile. */
function tourDialog(wall, cameras) {
  const order = [];
  const boxes = [...cameras().values()].map((c) => h("label", {}, h("input", {
    type: "checkbox", value: c.id,
    onchange: (e) => { if (e.target.checked) order.push(c.id); else order.splice(order.indexOf(c.id), 1); },
  }), " ", c.name));
  const every = h("input", { type: "number", name: "every_s", min: "1", max: "3600", value: "10" });
  const where = h("select", { name: "tile" }, h("option", { value: "" }, t("wall.tourWhole")),
    ...wall.tiles.map((_, i) => h("option", { value: String(i) }, t("wall.tourTile", { n: i + 1 }))));
  dialog(t("wall.tourTitle"), [
    h("div", { style: "max-height: 40vh; overflow: auto; display: flex; flex-direction: column" }, h("span.dim", {}, t("wall.tourCameras")), ...boxes),
    h("label", {}, t("wall.tourEvery"), " ", every),
    h("label", {}, t("wall.tourWhere"), " ", where),
  ], t("wall.tour"), (_, dlg) => {
    if (!order.length) throw new Error("cameras: tick at least one");
    wall.startTour({ cameras: [...order], every_s: Number(every.value) || 10, ...(where.value !== "" ? { tile: Number(where.value) } : {}) });
    dlg.close();
  }, "tour-dialog");
}

/** The save-view dialog. */
function saveDialog(wall, onSaved) {
  const name = h("input", { name: "name", required: true });
  const shared = h("input", { type: "checkbox", name: "shared" });
  dialog(t("wall.save"), [
    h("label", {}, t("wall.viewName"), " ", name),
    h("label", {}, shared, " ", t("wall.viewShared")),
  ], t("wall.save"), async (_, dlg) => {
    await api("/api/v1/views", { method: "POST", body: { name: name.value, shared: shared.checked, ...wall.current() } });
    dlg.close(); toast(t("toast.saved"), "good"); onSaved();
  }, "save-dialog");
}

/** The push-to-screen dialog (上墙): sends the current layout to a named wall screen. */
function pushDialog(wall) {
  const id = h("input", { name: "id", required: true, value: localStorage.getItem("sharpeye.last-wall") || "" });
  dialog(t("wall.push"), [h("label", {}, t("wall.screenId"), " ", id)], t("wall.push"), async (_, dlg) => {
    await api(`/api/v1/walls/${encodeURIComponent(id.value)}`, { method: "PUT", body: wall.current() });
    localStorage.setItem("sharpeye.last-wall", id.value);
    dlg.close(); toast(t("toast.saved"), "good");
  });
}

/** The operators' wall screen: tree on the left, toolbar, wall. */
export function wallScreen(ctx) {
  const host = h("div.wall#wall");
  const wall = new Wall(host, () => ctx.cameras);
  const views = h("select#views", { "aria-label": t("wall.views") });
  const loadViews = async () => {
    const list = await api("/api/v1/views").catch(() => []);
    views.replaceChildren(h("option", { value: "" }, t("wall.views")),
      ...list.map((v) => h("option", { value: v.id }, v.name + (v.owner !== ctx.me.user ? ` (${v.owner})` : ""))));
    views.onchange = () => { const v = list.find((x) => x.id === views.value); if (v) wall.apply(v); views.value = ""; };
  };
  const layoutButtons = Object.keys(LAYOUTS).map((name) => h("button", {
    dataset: { layout: name }, onclick: () => { wall.setLayout(name); mark(); },
  }, name));
  const mark = () => layoutButtons.forEach((b) => b.classList.toggle("on", b.dataset.layout === wall.layout));
  mark();
  const tourBtn = h("button#tour", { onclick: () => wall.tour ? (wall.stopTour(), tourBtn.textContent = t("wall.tour")) : tourDialog(wall, () => ctx.cameras) }, t("wall.tour"));
  const toolbar = h("div.toolbar", {}, h("span.dim", {}, t("wall.layout")), ...layoutButtons, tourBtn,
    h("button#save-view", { onclick: () => saveDialog(wall, loadViews) }, t("wall.save")), views,
    h("button#push", { onclick: () => pushDialog(wall) }, t("wall.push")),
    h("button#clear", { onclick: () => { wall.stopTour(); wall.tiles.forEach((_, i) => wall.put(i, null)); } }, t("wall.clear")));
  loadViews();
  const saved = JSON.parse(sessionStorage.getItem("sharpeye.wall") || "null");
  if (saved && saved.layout) { wall.apply(saved); mark(); }
  const keep = setInterval(() => sessionStorage.setItem("sharpeye.wall", JSON.stringify(wall.current())), 2000);
  return {
    el: h("div.content", {}, toolbar, host),
    pick(c) { let i = wall.firstFree(); if (i < 0) i = 0; wall.put(i, c.id); },
    refresh() { wall.refresh(); },
    stats() { return wall.stats(); },
    wall,
    destroy() { clearInterval(keep); wall.destroy(); },
  };
}

/**
 * The kiosk screen `/wall/{id}`: full screen, no chrome, shows the wall's layout and switches
 * when `wall.changed` names it. Logs in with its device token; after a node restart the event
 * stream and the tiles reconnect by themselves.
 */
export function kioskScreen(ctx, id) {
  document.body.classList.add("kiosk");
  const host = h("div.wall#wall");
  const wall = new Wall(host, () => ctx.cameras);
  // No layout until the wall's own arrives (the default would look like one).
  delete host.dataset.layout;
  const waiting = h("div.msg", { style: "position: absolute; inset: 40% 0; text-align: center" }, t("wall.kioskWaiting", { id }));
  let version = 0;
  const load = async () => {
    try {
      const w = await api(`/api/v1/walls/${encodeURIComponent(id)}`);
      waiting.remove();
      if (w.version !== version) { version = w.version; await ctx.reloadCameras(); wall.apply(w); }
    } catch (e) {
      if (e.status !== 404) setTimeout(load, 2000);
    }
  };
  // The layout at once, and again whenever the event stream (re)connects: a push made while
  // the node restarted is not missed.
  load();
  const stop = follow((kind, data) => {
    if (kind === "wall.changed" && data.wall === id) load();
  }, (state) => { if (state === "connected") load(); });
  return {
    el: h("div.content", {}, host, waiting),
    refresh() { wall.refresh(); },
    stats() { return wall.stats(); },
    wall,
    destroy() { stop(); wall.destroy(); },
  };
}
