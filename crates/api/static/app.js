// The app shell: login, the screens (#/wall, #/playback, #/health, #/admin, /m for handhelds,
// /wall/{id} for kiosk screens), the camera listing every screen shares, and toasts from the
// event stream. `window.wallStats()` reports each video tile of the screen shown.

import { api, follow, forgetMe, me, setDeviceToken, setSession, token, whenUnauthorized } from "./api.js";
import { toast } from "./dom.js";
import { lang, setLang, t, translate } from "./i18n.js";
import { cameraTree } from "./tree.js";
import { wallScreen, kioskScreen } from "./wall.js";
import { playbackScreen } from "./playback.js";
import { healthScreen } from "./health.js";
import { adminScreen } from "./admin.js";
import { mobileScreen } from "./mobile.js";

const $ = (id) => document.getElementById(id);
const ctx = {
  cameras: new Map(),
  me: null,
  async reloadCameras() {
    const list = await api("/api/v1/cameras");
    ctx.cameras = new Map(list.map((c) => [c.id, c]));
    tree?.set(list);
    screen?.refresh();
  },
};
let screen = null;
let tree = null;
let stopEvents = null;

window.wallStats = async () => (screen ? screen.stats() : []);

const kioskId = (() => { const m = /^\/wall\/([^/]+)$/.exec(location.pathname); return m ? decodeURIComponent(m[1]) : null; })();

// A kiosk URL may carry its device token once (/wall/room1?token=sk_...): it is kept in this
// browser and removed from the address bar.
{
  const u = new URL(location.href);
  const dev = u.searchParams.get("token");
  if (dev) { setDeviceToken(dev); u.searchParams.delete("token"); history.replaceState(null, "", u.pathname + u.search + u.hash); }
}

function showLogin(message = "") {
  stopEvents?.(); stopEvents = null;
  screen?.destroy(); screen = null;
  $("screen").replaceChildren();
  $("bar").hidden = true;
  $("login").hidden = false;
  $("err").textContent = message;
}

whenUnauthorized(() => { setSession(null); if (kioskId) setDeviceToken(null); forgetMe(); showLogin(); });

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const r = await api("/api/v1/login", { method: "POST", body: { username: $("user").value, password: $("pass").value } });
    setSession(r.token);
    $("pass").value = "";
    start();
  } catch (err) { $("err").textContent = err.message; }
});
$("logout").addEventListener("click", async () => {
  await api("/api/v1/logout", { method: "POST" }).catch(() => {});
  setSession(null); forgetMe(); showLogin();
});
$("lang").value = lang;
$("lang").addEventListener("change", () => { setLang($("lang").value); route(); });

function onEvent(kind, d) {
  if (kind.startsWith("camera.")) {
    const c = ctx.cameras.get(d.camera);
    if (c && d.status) { c.status = d.status; c.status_reason = d.status_reason; }
    if (kind === "camera.added" || kind === "camera.removed") ctx.reloadCameras().catch(() => {});
    else { tree?.set([...ctx.cameras.values()]); screen?.refresh(); }
  }
  if (kioskId) return;
  const name = (id) => ctx.cameras.get(id)?.name || id;
  if (kind === "camera.offline") toast(t("toast.offline", { cam: name(d.camera) }), "bad");
  else if (kind === "camera.online") toast(t("toast.online", { cam: name(d.camera) }), "good");
  else if (kind === "export.done") toast(t("toast.exportDone", { cam: name(d.camera) }), "good");
  else if (kind === "export.failed") toast(t("toast.exportFailed", { cam: name(d.camera), e: d.error || "" }), "bad");
  else if (kind === "disk.alarm") toast(t("toast.disk", { m: d.message }), "bad");
}

/** Shows the screen the address names. */
function route() {
  screen?.destroy();
  screen = null;
  tree = null;
  translate();
  const main = $("screen");
  if (kioskId) { screen = kioskScreen(ctx, kioskId); main.replaceChildren(screen.el); return; }
  if (location.pathname === "/m") { screen = mobileScreen(ctx); main.replaceChildren(screen.el); return; }
  const name = (location.hash.replace(/^#\//, "") || "wall").split("?")[0];
  for (const a of document.querySelectorAll("#bar nav a")) a.classList.toggle("active", a.getAttribute("href") === "#/" + name);
  const make = { wall: wallScreen, playback: playbackScreen, health: healthScreen, admin: adminScreen }[name] || wallScreen;
  screen = make(ctx);
  if (screen.pick) {
    tree = cameraTree({ onPick: (c) => screen.pick(c) });
    tree.set([...ctx.cameras.values()]);
    main.replaceChildren(tree.el, screen.el);
  } else main.replaceChildren(screen.el);
}

async function start() {
  if (!token()) { showLogin(); return; }
  try {
    ctx.me = await me(true);
    await ctx.reloadCameras();
  } catch (e) { if (e.status !== 401) showLogin(e.message); return; }
  $("login").hidden = true;
  $("bar").hidden = !!kioskId;
  $("who").textContent = ctx.me.user;
  $("nav-admin").hidden = !ctx.me.node_actions.includes("admin");
  api("/api/v1/node").then((n) => { $("node-name").textContent = `${n.name} · ${n.level}`; }).catch(() => {});
  route();
  stopEvents?.();
  stopEvents = follow(onEvent);
}

window.addEventListener("hashchange", () => token() && ctx.me && route());
// Statuses drift between events (a camera that never came up): refresh the listing now and then.
setInterval(() => token() && ctx.me && ctx.reloadCameras().catch(() => {}), 10000);
translate();
start().catch((e) => toast(e.message, "bad"));

