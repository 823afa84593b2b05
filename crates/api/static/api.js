// The API client: the page has no other way in than the public API (docs/api.md).
// A person's session token lives in sessionStorage (gone with the tab); a kiosk screen's device
// token (an API token an administrator issued for it) lives in localStorage so the screen comes
// back by itself after a reboot or a node restart.

const SESSION = "sharpeye.token";
const DEVICE = "sharpeye.device-token";

export function token() {
  return sessionStorage.getItem(SESSION) || localStorage.getItem(DEVICE);
}

export function setSession(t) {
  if (t) sessionStorage.setItem(SESSION, t); else sessionStorage.removeItem(SESSION);
}

export function setDeviceToken(t) {
  if (t) localStorage.setItem(DEVICE, t); else localStorage.removeItem(DEVICE);
}

/** An API error: status, code and message as the API gave them, and the field it names. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
    // Messages name the field they concern first ("reason: say why ..."): the form shows the
    // message next to it.
    const m = /^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)?): /.exec(message || "");
    this.field = m ? m[1] : null;
  }
}

let onUnauthorized = () => {};
/** What to do when the token stops being accepted (log in again). */
export function whenUnauthorized(f) { onUnauthorized = f; }

/** Calls the API; JSON in and out. Throws ApiError. */
export async function api(path, { method = "GET", body, headers = {}, raw = false, signal } = {}) {
  const h = { ...headers };
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  let payload = body;
  if (body !== undefined && typeof body !== "string") {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, { method, headers: h, body: payload, signal });
  } catch (e) {
    throw new ApiError(0, "unreachable", "the node cannot be reached: " + e.message);
  }
  if (raw) return r;
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!r.ok) {
    if (r.status === 401 && path !== "/api/v1/login") onUnauthorized();
    const e = json && json.error ? json.error : { code: "http_" + r.status, message: text.slice(0, 200) };
    throw new ApiError(r.status, e.code, e.message);
  }
  return json;
}

/** A signed URL token for `<video src>`, which cannot send headers. */
export async function mediaToken(camera, action) {
  // The node's default life (10 minutes or [auth] media_token_ttl): a player that runs longer
  // asks again when it reloads.
  const r = await api(`/api/v1/cameras/${encodeURIComponent(camera)}/media-token`, {
    method: "POST", body: { action },
  });
  return r.token;
}

export const q = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "")).toString();
export const cam = (id) => `/api/v1/cameras/${encodeURIComponent(id)}`;

/**
 * Follows `GET /api/v1/events` (server-sent events, read with fetch because EventSource cannot
 * send the bearer token), reconnecting with backoff when the node restarts. Returns a stop
 * function.
 */
export function follow(onEvent, onState = () => {}) {
  let stopped = false;
  let controller = null;
  (async () => {
    let delay = 500;
    while (!stopped) {
      try {
        controller = new AbortController();
        const r = await fetch("/api/v1/events", { headers: { Authorization: "Bearer " + token() }, signal: controller.signal });
        if (r.status === 401) { onUnauthorized(); return; }
        if (!r.ok) throw new Error("events: HTTP " + r.status);
        onState("connected");
        delay = 500;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let kind = "message", data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) kind = line.slice(6).trim();
              else if (line.startsWith("data:")) data += line.slice(5).trim();
            }
            if (!data) continue;
            try { onEvent(kind, JSON.parse(data)); } catch (e) { console.warn("event", kind, e); }
          }
        }
      } catch (e) {
        if (stopped) return;
      }
      onState("reconnecting");
      await new Promise((ok) => setTimeout(ok, delay));
      delay = Math.min(delay * 2, 5000);
    }
  })();
  return () => { stopped = true; controller && controller.abort(); };
}

/** The caller, cached for the page's life (`GET /api/v1/me`). */
let meCache = null;
export async function me(refresh = false) {
  if (!meCache || refresh) meCache = await api("/api/v1/me");
  return meCache;
}
export function forgetMe() { meCache = null; }

/** RFC 3339 in UTC for query strings. */
export const iso = (ms) => new Date(ms).toISOString();
