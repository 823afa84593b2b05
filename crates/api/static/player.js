// One video tile: picks the stream and transport a camera can play on in this browser, keeps the
// last frame with a badge saying why when the camera fails, retries by itself, and switches
// (stream, camera, retry) without a black flash: the new session plays in a hidden video
// element and replaces the old one only once it has decoded a frame.
//
// Choices, in order:
//   stream:    asked for, else main above SUB_BELOW_PX of tile height (as Nx Witness does) and the
//              sub-stream below it; an H.265 main stream this browser cannot decode → the H.264
//              sub-stream; a link budget that refuses main → sub.
//   transport: H.264 → WebRTC (WHEP), then fMP4 over MSE (through a WebSocket) when WHEP is
//              refused or its session cannot connect (UDP blocked, or no address to offer; the
//              whole page then skips WebRTC for a while); H.265 → fMP4 over MSE where the
//              browser has hvc1; otherwise the tile says exactly that. A page opened with
//              ?transport=fmp4 plays everything over MSE.

import { api, cam, mediaToken, q, token } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

/** Tiles shorter than this (CSS px) take the sub-stream. */
export const SUB_BELOW_PX = 172;
/** A tile that decodes nothing new for this long is stalled. */
const STALL_MS = 2500;
/** A new session that shows no frame within this long failed. */
const FIRST_FRAME_MS = 8000;
/** A WebRTC session answered but not connected after this long cannot reach the node over UDP
 *  (a firewall between the wall PC and the node): the tile falls back to fMP4 at once. */
const CONNECT_MS = 3000;
/** Once WebRTC could not connect on this page, new sessions go straight to fMP4 for this long
 *  rather than each waiting CONNECT_MS, then WebRTC is tried again. */
const WEBRTC_RETRY_MS = 120000;
let webrtcFailedAt = -Infinity;
const webrtcDown = () => performance.now() - webrtcFailedAt < WEBRTC_RETRY_MS;

/** `?transport=fmp4` on a page (a wall PC whose network drops WebRTC's UDP, say) plays every
 *  tile as fMP4 over MSE instead of trying WebRTC first. */
const TRANSPORT = new URLSearchParams(location.search).get("transport");
const FMP4_ONLY = TRANSPORT === "fmp4";
/** Walls of more tiles than this play H.264 over fMP4 too (unless `?transport=webrtc`): with 25
 *  tiles, Chromium's WebRTC receive path grew the page's memory by ~130 MB over its first 2.5
 *  minutes, while MSE stayed flat from the first minute and, its sockets opened a few at a time,
 *  starts as fast (docs/benchmarks.md, the wall). Up to 16 tiles keep WebRTC's lower delay. */
export const FMP4_ABOVE_TILES = 16;
let bigWall = false;
/** Tells the tiles how many the page shows (the wall's layout). */
export function wallSize(n) { bigWall = n > FMP4_ABOVE_TILES; }
const preferFmp4 = () => FMP4_ONLY || (bigWall && TRANSPORT !== "webrtc") || webrtcDown();

const isHevc = (codec) => /^(hvc1|hev1)/.test(codec || "");
const mseCan = (codec) => !!(window.MediaSource && MediaSource.isTypeSupported(`video/mp4; codecs="${codec}"`));
/** Can this browser decode H.265 at all (MSE)? Checked once. */
export const browserHevc = mseCan("hvc1.1.6.L93.B0");

class Failure extends Error {
  constructor(reason, message, retry = true) { super(message); this.reason = reason; this.retry = retry; }
}

function failureOf(e) {
  if (e instanceof Failure) return e;
  const byCode = { link_budget: "tile.budget", codec: "tile.codec", no_video: "tile.noVideo", forbidden: "tile.forbidden" };
  return new Failure(byCode[e.code] || (e.status === 404 ? "tile.forbidden" : "tile.error"), e.message || String(e));
}

/** A WebRTC session by WHEP. `slot.cancel` is set to what gives up on it before it is answered. */
async function whep(video, camera, stream, slot) {
  const t0 = performance.now();
  const pc = new RTCPeerConnection();
  const offer = new AbortController();
  slot.cancel = () => { offer.abort(); pc.close(); };
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (e) => { video.srcObject = e.streams[0] || new MediaStream([e.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((ok) => {
    if (pc.iceGatheringState === "complete") return ok();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && ok());
    // The node is ICE-lite with one host candidate: our first host candidate is enough, and
    // LAN candidates come at once; do not wait for slow ones.
    pc.addEventListener("icecandidate", (e) => e.candidate && e.candidate.type === "host" && setTimeout(ok, 20));
    setTimeout(ok, 300);
  });
  const gathered = performance.now();
  if (!/^a=candidate:/m.test(pc.localDescription.sdp)) {
    // No address to offer: a machine whose only interface is loopback (Chromium offers none
    // from it), or a browser told to keep WebRTC off UDP. It can never connect.
    pc.close();
    webrtcFailedAt = performance.now();
    throw Object.assign(new Error("this browser offers WebRTC no network address"), { code: "webrtc_unreachable" });
  }
  const r = await api(`${cam(camera)}/whep?stream=${stream}`, {
    method: "POST", raw: true, headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp, signal: offer.signal,
  });
  if (r.status !== 201) {
    pc.close();
    let err = { code: "http_" + r.status, message: "" };
    try { err = (await r.json()).error; } catch { /* not JSON */ }
    throw Object.assign(new Error(err.message), { code: err.code, status: r.status });
  }
  await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
  const resource = r.headers.get("Location");
  const answered = performance.now();
  const session = {
    kind: "webrtc", stream, frames: 0, dropped: 0,
    timing: { gather_ms: Math.round(gathered - t0), answer_ms: Math.round(answered - gathered) },
    connected: false,
    /** Answered long ago and never connected, or failed before connecting: UDP does not pass. */
    unreachable() {
      return !this.connected && (pc.connectionState === "failed" || performance.now() - answered > CONNECT_MS);
    },
    async poll() {
      for (const s of (await pc.getStats()).values()) {
        if (s.type === "inbound-rtp" && s.kind === "video") {
          this.frames = s.framesDecoded || 0;
          this.dropped = s.framesDropped || 0;
          if (s.jitterBufferEmittedCount) this.behind_ms = Math.round((s.jitterBufferDelay / s.jitterBufferEmittedCount) * 1000);
        }
      }
    },
    close() {
      pc.close();
      if (resource) fetch(resource, { method: "DELETE", headers: { Authorization: "Bearer " + token() } }).catch(() => {});
    },
  };
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "failed") session.failed = true;
    if (pc.connectionState === "connected") {
      session.connected = true;
      session.timing.connected_ms = Math.round(performance.now() - answered);
    }
  });
  return session;
}

/** `parts` end to end in one array. */
function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of parts) { out.set(b, at); at += b.length; }
  return out;
}

/** How many of a page's WebSockets may be opening at once. Chromium's network service delays
 *  each new WebSocket handshake of a renderer by a random 1–5 s scaled by 2^(pending − 16)
 *  (its per-process throttler): a 25-tile wall opening every socket at once had its last tiles
 *  wait 3–5 s for the handshake alone, while a client without that throttle opened all 25 in
 *  80 ms. A few at a time keep the delay under a millisecond; each handshake takes a few. */
const SOCKETS_OPENING = 4;
let socketsOpening = 0;
const socketQueue = [];

/** A WebSocket to `url`, opened once fewer than SOCKETS_OPENING of the page's are opening. */
async function openSocket(url) {
  while (socketsOpening >= SOCKETS_OPENING) await new Promise((ok) => socketQueue.push(ok));
  socketsOpening++;
  const ws = new WebSocket(url);
  let done = false;
  const opened = () => {
    if (done) return;
    done = true;
    socketsOpening--;
    socketQueue.shift()?.();
  };
  for (const e of ["open", "error", "close"]) ws.addEventListener(e, opened);
  return ws;
}

/** fMP4 into Media Source Extensions, over a WebSocket: a browser opens only six HTTP/1.1
 *  connections to a host, and a tile holding one for as long as it plays would cap a page at six
 *  MSE tiles; WebSockets are not counted (see crates/api/src/live_socket.rs). The node's first
 *  message says what its HTTP status and headers would have: the stream served, or an error. */
async function fmp4(video, camera, stream, codecHint, slot) {
  const t0 = performance.now();
  const since = () => Math.round(performance.now() - t0);
  const timing = {};
  const mt = await mediaToken(camera, "live");
  timing.token_ms = since();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = await openSocket(`${scheme}//${location.host}${cam(camera)}/live.mp4?${q({ stream, token: mt })}`);
  slot.cancel = () => ws.close();
  ws.onopen = () => { timing.open_ms = since(); };
  ws.binaryType = "arraybuffer";
  const inbox = [];
  let ended = false, wake = null;
  ws.onmessage = (e) => { inbox.push(e.data); if (wake) wake(); };
  ws.onclose = ws.onerror = () => { ended = true; if (wake) wake(); };
  const next = async () => {
    while (!inbox.length && !ended) await new Promise((ok) => { wake = ok; });
    wake = null;
    return inbox.shift();
  };
  const head = await next();
  timing.head_ms = since();
  if (typeof head !== "string") { ws.close(); throw new Failure("tile.noVideo", "the stream ended at once"); }
  const info = JSON.parse(head);
  if (info.error) {
    ws.close();
    throw Object.assign(new Error(info.error.message), { code: info.error.code, status: info.error.status });
  }
  const served = info.stream || stream;
  const firstData = await next();
  if (!(firstData instanceof ArrayBuffer)) { ws.close(); throw new Failure("tile.noVideo", "the stream ended at once"); }
  timing.data_ms = since();
  const first = new Uint8Array(firstData);
  let codec = codecHint;
  if (!codec || served !== stream) {
    const text = new TextDecoder("latin1").decode(first.slice(0, 4096));
    codec = text.includes("hvcC") ? "hvc1.1.6.L120.90" : "avc1.640028";
  }
  if (!mseCan(codec)) {
    ws.close();
    // Coded as the node's WHEP refusal of an H.265 stream is: a tile that did not know the
    // stream was H.265 (an on-demand camera not yet pulled) learns it and takes the camera's
    // H.264 sub-stream or transcode. Without WebRTC, this is where it learns it.
    throw Object.assign(new Failure("tile.codec", `${codec} cannot be decoded by this browser`, false), { code: "codec" });
  }
  const ms = new MediaSource();
  const url = URL.createObjectURL(ms);
  video.src = url;
  await new Promise((ok) => ms.addEventListener("sourceopen", ok, { once: true }));
  timing.source_ms = since();
  const sb = ms.addSourceBuffer(`video/mp4; codecs="${codec}"`);
  sb.mode = "sequence";
  const queue = [first];
  let closed = false;
  const pump = () => {
    if (closed || sb.updating || !queue.length) return;
    if (timing.append_ms === undefined) timing.append_ms = since();
    // Everything waiting goes in one append: each append costs the page's thread a round trip
    // to the media pipeline, and 25 tiles appending frame by frame slowed each other's start.
    const data = queue.length === 1 ? queue[0] : concat(queue);
    queue.length = 0;
    try { sb.appendBuffer(data); } catch { session.failed = true; }
  };
  sb.addEventListener("updateend", () => {
    // Stay at the live edge, and keep only a few seconds in the buffer so memory stays flat.
    const b = video.buffered;
    if (b.length) {
      const end = b.end(b.length - 1);
      if (end - video.currentTime > 2) video.currentTime = end - 0.3;
      if (!sb.updating && video.currentTime - b.start(0) > 20) { try { sb.remove(b.start(0), video.currentTime - 10); return; } catch { /* busy */ } }
    }
    pump();
  });
  pump();
  const session = {
    kind: "fmp4", stream: served, frames: 0, dropped: 0, timing,
    async poll() {
      const pq = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
      this.frames = pq ? pq.totalVideoFrames : 0;
      this.dropped = pq ? pq.droppedVideoFrames : 0;
      const b = video.buffered;
      if (b.length) this.behind_ms = Math.round((b.end(b.length - 1) - video.currentTime) * 1000);
    },
    close() { closed = true; ws.close(); URL.revokeObjectURL(url); },
  };
  const take = (data) => {
    if (typeof data === "string") return;
    queue.push(new Uint8Array(data));
    if (queue.length > 200) queue.splice(0, queue.length - 50);
    pump();
  };
  // What came while the source buffer opened, then each message as it comes.
  while (inbox.length) take(inbox.shift());
  ws.onmessage = (e) => take(e.data);
  ws.onclose = ws.onerror = () => { if (!closed) session.failed = true; };
  if (ended && !closed) session.failed = true;
  video.play().catch(() => {});
  return session;
}

/** One tile of a wall. */
export class Tile {
  /**
   * `el` is the tile's element; `camera` objects are the API's camera listing entries.
   * `onClose` is called when the user clears the tile.
   */
  constructor(el, { index = 0, onClose = () => {}, ptz = null } = {}) {
    this.el = el;
    this.index = index;
    this.camera = null;
    this.want = null;
    this.cur = null;
    this.pending = null;
    this.badge = h("span.badge", { hidden: true });
    this.cap = h("span.cap");
    this.msg = h("div.msg", {}, t("wall.dropHere"));
    this.closeBtn = h("button.close", { title: "×", onclick: (e) => { e.stopPropagation(); onClose(this); } }, "×");
    el.append(this.cap, this.badge, this.msg, this.closeBtn);
    this.reason = null;
    this.retryAt = 0;
    this.retryDelay = 1000;
    this.lastFrames = 0;
    this.lastProgress = performance.now();
    this.gen = 0;
    this.ptz = ptz;
    this.ticks = 0;
    // Fast while a new session waits for its first frame (it shows the moment it has one),
    // every 500 ms otherwise.
    this.timer = setInterval(() => { this.ticks++; if (this.pending || this.ticks % 5 === 0) this.tick(); }, 100);
  }

  /** Shows `camera` (or nothing), on `stream` (`main`, `sub`, or null to choose by size). */
  show(camera, stream = null) {
    if (camera && this.camera && camera.id === this.camera.id && stream === this.want) {
      this.camera = camera;
      return;
    }
    this.camera = camera;
    this.want = stream;
    this.setBadge(null);
    this.cap.textContent = camera ? camera.name : "";
    this.msg.hidden = !!camera;
    this.retryDelay = 1000;
    if (!camera) { this.drop(); this.msg.textContent = t("wall.dropHere"); return; }
    if (camera.status === "offline") this.setBadge("tile.offline", camera.status_reason || "");
    this.start();
  }

  /** The stream this tile should be on now. */
  chooseStream() {
    const c = this.camera;
    const hasSub = (c.streams || []).includes("sub");
    const hasH264 = (c.streams || []).includes("h264");
    let want = this.want || ((this.el.clientHeight > SUB_BELOW_PX || !hasSub) ? "main" : "sub");
    // An H.265 main stream this browser cannot decode: the camera's own H.264 sub-stream, else
    // the node's transcode of the main one (built with the gstreamer feature).
    const hevcMain = this.hevcMain || isHevc(c.media?.main?.codec);
    if (want === "main" && hevcMain && !browserHevc) want = hasSub ? "sub" : (hasH264 ? "h264" : "main");
    if (this.budgetRefusedMain && hasSub) want = "sub";
    return want;
  }

  drop() {
    for (const s of [this.cur, this.pending]) if (s) { s.session?.close(); s.video.remove(); }
    this.cur = this.pending = null;
  }

  setBadge(reason, detail = "") {
    this.reason = reason;
    this.badge.hidden = !reason;
    this.badge.textContent = reason ? t(reason) : "";
    this.badge.title = detail;
    this.el.dataset.state = reason ? "failed" : (this.cur ? "playing" : "starting");
  }

  /** Starts a session for the current camera in a hidden element; it replaces the visible one on its first frame. */
  async start() {
    const gen = ++this.gen;
    const camera = this.camera;
    if (this.pending) { this.pending.session?.close(); this.pending.video.remove(); this.pending = null; }
    const stream = this.chooseStream();
    const codec = camera.media?.[stream]?.codec;
    const video = h("video.pending", { muted: true, autoplay: true, playsInline: true });
    video.muted = true;
    this.el.prepend(video);
    const slot = { video, session: null, stream, started: performance.now(), camera: camera.id };
    this.pending = slot;
    try {
      let session;
      if ((isHevc(codec) || (this.hevcMain && stream === "main")) && !browserHevc) {
        throw new Failure("tile.codec", t("tile.hevcNone"), false);
      }
      if (isHevc(codec) || preferFmp4()) session = await fmp4(video, camera.id, stream, codec, slot);
      else {
        try { session = await whep(video, camera.id, stream, slot); } catch (e) {
          if (gen !== this.gen) throw e;
          if (e.code === "link_budget" || e.code === "no_video" || e.code === "codec" || e.status === 403 || e.status === 404) throw e;
          session = await fmp4(video, camera.id, stream, codec, slot);
        }
      }
      if (gen !== this.gen) { session.close(); video.remove(); return; }
      slot.session = session;
    } catch (e) {
      if (gen !== this.gen) return;
      const f = failureOf(e);
      if (e.code === "codec" && stream === "main" && !this.hevcMain) {
        // The listing did not know the codec yet (an on-demand camera): now it is known.
        this.hevcMain = true;
        video.remove(); this.pending = null;
        return this.start();
      }
      if (f.reason === "tile.budget" && stream === "main" && (camera.streams || []).includes("sub")) {
        this.budgetRefusedMain = true;
        video.remove(); this.pending = null;
        return this.start();
      }
      video.remove();
      this.pending = null;
      this.fail(f);
    }
  }

  fail(f) {
    this.setBadge(f.reason, f.message);
    if (!this.cur) { this.msg.hidden = false; this.msg.textContent = f.message || t(f.reason); }
    this.retryAt = f.retry ? performance.now() + this.retryDelay : Infinity;
    this.retryDelay = Math.min(this.retryDelay * 2, 8000);
  }

  async tick() {
    if (!this.camera) return;
    const now = performance.now();
    const p = this.pending;
    if (p && !p.session && now - p.started > FIRST_FRAME_MS) {
      // Never answered (a request or socket that hangs): give up on it and retry, as for a
      // session that shows no frame; `start` drops what arrives late for an old generation.
      this.gen++;
      p.cancel?.();
      p.video.remove();
      this.pending = null;
      this.fail(new Failure("tile.noVideo", t("tile.noVideo")));
      return;
    }
    if (p && p.session) {
      await p.session.poll().catch(() => {});
      if (p !== this.pending) return;
      if (p.session.frames === 0 && p.session.unreachable?.()) {
        // WebRTC does not get through to the node: the same tile over fMP4, without a badge.
        webrtcFailedAt = now;
        p.session.close(); p.video.remove(); this.pending = null;
        this.start();
        return;
      }
      if (p.session.frames > 0) {
        // The new session has a picture: it replaces the old one without a black frame.
        const old = this.cur;
        p.video.classList.remove("pending");
        this.cur = p;
        // How long this session took to show its first frame, and where the time went.
        this.startup = { total_ms: Math.round(now - p.started), ...(p.session.timing || {}) };
        this.pending = null;
        this.lastFrames = 0;
        this.lastProgress = now;
        this.retryDelay = 1000;
        this.msg.hidden = true;
        this.setBadge(null);
        if (old) { old.session?.close(); old.video.remove(); }
      } else if (p.session.failed || now - p.started > FIRST_FRAME_MS) {
        p.session.close(); p.video.remove(); this.pending = null;
        this.fail(new Failure("tile.noVideo", t("tile.noVideo")));
      }
      return;
    }
    const c = this.cur;
    if (c && c.session) {
      await c.session.poll().catch(() => {});
      if (c.session.frames > this.lastFrames) { this.lastFrames = c.session.frames; this.lastProgress = now; }
      const stalled = now - this.lastProgress > STALL_MS || c.session.failed;
      if (stalled && !this.reason) {
        this.fail(new Failure(this.camera.status === "offline" ? "tile.offline" : "tile.noVideo", t("tile.noVideo")));
      }
      if (!stalled && !p && this.chooseStream() !== c.stream) { this.start(); return; }
    }
    if (!this.pending && this.reason && now >= this.retryAt) {
      this.retryAt = Infinity;
      this.start();
    }
  }

  /** For `window.wallStats()`. */
  stats() {
    const s = this.cur?.session;
    return {
      tile: this.index,
      camera: this.camera?.id ?? null,
      kind: s ? s.kind : (this.reason ? "failed" : (this.camera ? "starting" : "empty")),
      stream: s ? s.stream : null,
      frames: s ? s.frames : 0,
      dropped: s ? s.dropped : 0,
      // How far behind what has arrived the picture is: MSE's buffer ahead of the playhead, or
      // WebRTC's mean jitter-buffer delay.
      behind_ms: s?.behind_ms ?? null,
      startup: this.startup || null,
      badge: this.reason ? t(this.reason) : null,
      reason: this.reason,
      // A session on its way: how long it has been starting and whether it has been answered.
      pending: this.pending
        ? { stream: this.pending.stream, ms: Math.round(performance.now() - this.pending.started), answered: !!this.pending.session }
        : null,
    };
  }

  /** Stops everything (the tile is leaving the page). */
  destroy() { clearInterval(this.timer); this.gen++; this.drop(); }
}
