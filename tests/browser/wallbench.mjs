// The wall benchmark's browser side (benches/wall.rs): opens a kiosk wall screen that the bench
// pushed a layout to, and reports as JSON lines
//   READY {ms}                         when every tile decodes (from navigation start)
//   SAMPLE {t_s, tiles:[{camera, frames, dropped, badge}], heap}   every `every` seconds
// and asks the bench to kill a camera halfway (`NEED kill CAMERA`) so a failure's effect on the
// other tiles is measured. Ends after `seconds`, printing `DONE`.
// Usage: node wallbench.mjs URL WALL TOKEN SECONDS TILES KILL_CAMERA [EVERY_S] [TRANSPORT]
import { chromium } from "playwright-core";
import readline from "node:readline";

const [url, wall, token, seconds, tiles, kill, every = "5", transport = ""] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--enable-precise-memory-info"],
});
const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
const t0 = Date.now();
await page.goto(`${url}wall/${wall}?token=${token}${transport ? `&transport=${transport}` : ""}`);
const n = Number(tiles);
// When each tile first decoded (ms from navigation), and its own session's startup: whether a
// slow wall is late to start its tiles or slow in each.
const firstFrame = new Map();
let last = [];
for (;;) {
  const s = await page.evaluate(() => window.wallStats());
  last = s;
  for (const x of s) if (x.frames > 0 && !firstFrame.has(x.tile)) firstFrame.set(x.tile, Date.now() - t0);
  if (s.filter((x) => x.frames > 0).length >= n) break;
  if (Date.now() - t0 > 60000) { console.log("READY -1"); break; }
  await sleep(50);
}
console.log("READY " + (Date.now() - t0));
const sorted = (a) => a.slice().sort((x, y) => x - y);
console.error(`wallbench: tiles first decoding at ${JSON.stringify(sorted([...firstFrame.values()]))} ms; ` +
  `their sessions' startup ${JSON.stringify(sorted(last.map((x) => x.startup?.total_ms).filter((v) => v !== undefined).map(Math.round)))} ms`);
// Where the slowest sessions' time went (each transport's own steps; see player.js).
const slowest = last.filter((x) => x.startup).sort((a, b) => b.startup.total_ms - a.startup.total_ms).slice(0, 5);
console.error(`wallbench: slowest startups ${JSON.stringify(slowest.map((x) => ({ tile: x.tile, ...x.startup })))}`);
const end = Date.now() + Number(seconds) * 1000;
let killed = false;
while (Date.now() < end) {
  await sleep(Number(every) * 1000);
  const t_s = (Date.now() - t0) / 1000;
  const tilesNow = await page.evaluate(() => window.wallStats());
  const heap = await page.evaluate(() => (performance.memory ? performance.memory.usedJSHeapSize : 0));
  console.log("SAMPLE " + JSON.stringify({ t_s, heap, tiles: tilesNow.map((x) => ({ camera: x.camera, frames: x.frames, dropped: x.dropped, badge: x.badge })) }));
  const behind = sorted(tilesNow.map((x) => x.behind_ms).filter((v) => typeof v === "number"));
  const kinds = [...new Set(tilesNow.map((x) => x.kind))].join("+");
  if (behind.length) console.error(`wallbench: at ${Math.round(t_s)} s, ${kinds} tiles behind what arrived: median ${behind[behind.length >> 1]} ms, max ${behind[behind.length - 1]} ms`);
  if (!killed && kill !== "-" && Date.now() > end - Number(seconds) * 500) {
    killed = true;
    console.log("NEED kill " + kill);
    await lines.next();
  }
}
// The harness reads the browser's memory when it sees a SAMPLE line: give it time to read the
// last one before the browser's processes go away.
await sleep(1000);
await browser.close();
console.log("DONE");
// stdin (the bench's answers) would keep the process alive.
process.exit(0);
