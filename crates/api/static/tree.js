// The org tree: the cameras the user may see (the API lists nothing else), folded by their org
// path, with online/total per folder, status dots, a search box, and drag or click to use a
// camera. Cameras of lower nodes already carry the org under which their link hangs.

import { h } from "./dom.js";
import { t } from "./i18n.js";

/** The tree panel. `onPick(camera)` on click; cameras drag as `text/x-camera`. */
export function cameraTree({ onPick = () => {} } = {}) {
  const search = h("input", { type: "search", placeholder: t("tree.search"), "aria-label": t("tree.search") });
  const body = h("div.tree");
  const el = h("aside.side", {}, search, body);
  let cameras = [];
  const open = new Set();
  const closed = new Set();
  // What the drawn tree shows, so that a new listing that only changes statuses (every camera
  // event brings one) updates dots and counts in place: redrawing replaced the row an operator
  // was dragging, and the drop never came (a wall test's flake, and a real annoyance with
  // hundreds of cameras changing state).
  let drawnKey = null;
  const dots = new Map();
  const counts = new Map();
  let dragging = false;
  let redrawAfterDrag = false;

  function matches(c, f) {
    if (!f) return true;
    return [c.name, c.id, c.org].some((s) => (s || "").toLowerCase().includes(f));
  }

  function render() {
    if (dragging) { redrawAfterDrag = true; return; }
    const f = search.value.trim().toLowerCase();
    const root = { name: "", path: "", children: new Map(), cams: [] };
    for (const c of cameras) {
      if (!matches(c, f)) continue;
      let node = root;
      for (const part of (c.org || "").split("/").filter(Boolean)) {
        const path = node.path ? node.path + "/" + part : part;
        if (!node.children.has(part)) node.children.set(part, { name: part, path, children: new Map(), cams: [] });
        node = node.children.get(part);
      }
      node.cams.push(c);
    }
    const count = (n) => {
      let on = n.cams.filter((c) => c.status === "online").length, all = n.cams.length;
      for (const ch of n.children.values()) { const [a, b] = count(ch); on += a; all += b; }
      n.on = on; n.all = all;
      return [on, all];
    };
    count(root);
    const key = JSON.stringify([f, cameras.map((c) => [c.id, c.name, c.org, c.node])]);
    if (key === drawnKey) {
      for (const c of cameras) { const d = dots.get(c.id); if (d) d.className = "dot " + c.status; }
      const recount = (n) => { const el = counts.get(n.path); if (el) el.textContent = `${n.on}/${n.all}`; n.children.forEach(recount); };
      recount(root);
      return;
    }
    drawnKey = key;
    dots.clear();
    counts.clear();
    const draw = (n) => {
      const items = [];
      for (const ch of [...n.children.values()].sort((a, b) => a.name.localeCompare(b.name))) {
        // Small trees start unfolded; large ones show their first two levels.
        const unfold = open.has(ch.path) || (!closed.has(ch.path) && (cameras.length <= 100 || ch.path.split("/").length < 2));
        const count = h("span.count", {}, `${ch.on}/${ch.all}`);
        counts.set(ch.path, count);
        const d = h("details", { open: f !== "" || unfold, dataset: { org: ch.path } },
          h("summary", {}, ch.name, count), ...draw(ch));
        d.addEventListener("toggle", () => {
          if (f) return;
          if (d.open) { open.add(ch.path); closed.delete(ch.path); } else { open.delete(ch.path); closed.add(ch.path); }
        });
        items.push(d);
      }
      for (const c of n.cams.sort((a, b) => a.name.localeCompare(b.name))) {
        const dot = h("span.dot." + c.status);
        dots.set(c.id, dot);
        const row = h("div.cam", {
          draggable: "true", title: `${c.id}${c.node ? " @ " + c.node : ""}`, dataset: { camera: c.id },
          ondragstart: (e) => { dragging = true; e.dataTransfer.setData("text/x-camera", c.id); e.dataTransfer.effectAllowed = "copy"; },
          ondragend: () => { dragging = false; if (redrawAfterDrag) { redrawAfterDrag = false; render(); } },
          onclick: () => onPick(cameras.find((x) => x.id === c.id) || c),
        }, dot, c.name);
        items.push(row);
      }
      return items;
    };
    const items = draw(root);
    body.replaceChildren(...(items.length ? items : [h("p.dim", {}, t("tree.none"))]));
  }

  search.addEventListener("input", render);
  return {
    el,
    /** Replaces the cameras shown (the tree keeps which folders are open). */
    set(list) { cameras = list; render(); },
  };
}
