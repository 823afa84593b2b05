// The handheld view for grid workers: the cameras of the user's grid (the ones they may see) or
// those nearest their position (browser geolocation against the cameras' locations), live on
// the sub-stream, the last five minutes played back, and a snapshot of the picture to attach to
// a report.

import { cam, iso, mediaToken, q } from "./api.js";
import { h, toast } from "./dom.js";
import { t } from "./i18n.js";
import { Tile } from "./player.js";

/** Metres between two points (haversine). */
function metres(a, b) {
  const r = 6371e3, rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad, dLon = (b.lon - a.lon) * rad;
  const x = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * r * Math.asin(Math.sqrt(x));
}

export function mobileScreen(ctx) {
  const tileEl = h("div.tile");
  const tile = new Tile(tileEl, { index: 0 });
  const replay = h("video", { controls: true, playsInline: true, muted: true, style: "width: 100%; max-height: 40vh; display: none" });
  let here = null;
  let current = null;
  const list = h("div.cams");
  const render = () => {
    let cams = [...ctx.cameras.values()];
    if (here) {
      cams = cams.filter((c) => c.location).map((c) => ({ c, d: metres(here, c.location) })).sort((a, b) => a.d - b.d).slice(0, 30)
        .map(({ c, d }) => Object.assign({}, c, { distance: d }));
    }
    list.replaceChildren(...cams.map((c) => h("div", { dataset: { camera: c.id }, onclick: () => open(c) },
      h("span.dot." + c.status), c.name, c.distance !== undefined ? h("span.dim", {}, " · " + t("m.distance", { d: Math.round(c.distance) })) : "")));
  };
  const open = (c) => {
    current = c;
    replay.style.display = "none"; replay.src = "";
    tileEl.style.display = "";
    tile.show(c, (c.streams || []).includes("sub") ? "sub" : "main");
  };
  const last = async () => {
    if (!current) return;
    const token = await mediaToken(current.id, "playback");
    const end = Date.now() - 2000;
    replay.src = `${cam(current.id)}/playback.mp4?${q({ start: iso(end - 300e3), end: iso(end), token })}`;
    replay.style.display = "block"; tileEl.style.display = "none";
    replay.play().catch(() => {});
  };
  const snapshot = () => {
    const v = replay.style.display === "block" ? replay : tileEl.querySelector("video:not(.pending)");
    if (!v || !v.videoWidth) { toast(t("tile.noVideo"), "bad"); return; }
    const c = document.createElement("canvas");
    c.width = v.videoWidth; c.height = v.videoHeight;
    c.getContext("2d").drawImage(v, 0, 0);
    const a = h("a", { href: c.toDataURL("image/jpeg", 0.9), download: `${current.id}-${new Date().toISOString()}.jpg` });
    a.click();
  };
  const near = h("button", {
    onclick: () => navigator.geolocation?.getCurrentPosition(
      (p) => { here = { lat: p.coords.latitude, lon: p.coords.longitude }; render(); },
      (e) => toast(e.message, "bad")),
  }, t("m.near"));
  const all = h("button", { onclick: () => { here = null; render(); } }, t("m.all"));
  render();
  return {
    el: h("div.content.mobile", {}, h("div.toolbar", {}, all, near,
      h("button", { onclick: () => current && open(current) }, t("m.live")), h("button", { onclick: last }, t("m.last")),
      h("button", { onclick: snapshot }, t("m.snapshot"))), tileEl, replay, list),
    refresh() { render(); tile.camera && ctx.cameras.get(tile.camera.id) && (tile.camera = ctx.cameras.get(tile.camera.id)); },
    stats() { return [tile.stats()]; },
    destroy() { tile.destroy(); },
  };
}
