// Opens a node's page in headless Chromium, logs in, and waits until the live wall's tile for a
// camera decodes frames over WebRTC. Prints the wall's statistics as JSON; exits 1 on timeout.
// Usage: node wall.mjs URL PASSWORD CAMERA [SECONDS]
import { chromium } from "playwright-core";

const [url, password, camera, seconds = "30"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let stats = [];
let ok = false;
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`page: ${m.text()}`));
  await page.goto(url);
  await page.fill("#pass", password);
  await page.click("#login button");
  const deadline = Date.now() + Number(seconds) * 1000;
  while (Date.now() < deadline) {
    stats = await page.evaluate(() => (window.wallStats ? window.wallStats() : []));
    const tile = stats.find((s) => s.camera === camera);
    if (tile && tile.kind === "webrtc" && tile.frames > 25) { ok = true; break; }
    await new Promise((r) => setTimeout(r, 500));
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(stats));
process.exit(ok ? 0 : 1);
