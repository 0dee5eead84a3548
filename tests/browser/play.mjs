// Plays a page in Debian's Chromium (driven by playwright-core; playwright never downloads a
// browser here) and waits until its <video id="video"> has played past a time at the expected
// width. Prints one JSON line with what it saw; exits 0 on success and 1 otherwise.
//
//   node tests/browser/play.mjs <url> [--min-seconds 3] [--width 320] [--timeout-ms 30000]
//
// Used by tests/python/test_video_browser.py against Sluice's `/video/<stream>` page (hls.js).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at === -1 ? fallback : Number(process.argv[at + 1]);
}

const url = process.argv[2];
if (!url || url.startsWith('--')) {
  console.error('usage: node play.mjs <url> [--min-seconds N] [--width W] [--timeout-ms T]');
  process.exit(2);
}
const minSeconds = option('--min-seconds', 3);
const width = option('--width', 320);
const timeoutMs = option('--timeout-ms', 30000);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const userDataDir = mkdtempSync(join(tmpdir(), 'sluice-chromium-'));
const result = { ok: false, url, currentTime: null, videoWidth: null, videoHeight: null, error: null, console: [] };
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.on('console', (message) => result.console.push(`${message.type()}: ${message.text()}`.slice(0, 500)));
  page.on('pageerror', (error) => result.console.push(`pageerror: ${error.message}`.slice(0, 500)));
  const response = await page.goto(url, { waitUntil: 'load', timeout: timeoutMs });
  if (!response || !response.ok()) {
    throw new Error(`GET ${url} answered ${response ? response.status() : 'nothing'}`);
  }
  try {
    await page.waitForFunction(
      ([seconds, expectedWidth]) => {
        const video = document.getElementById('video');
        return video !== null && video.currentTime > seconds && video.videoWidth === expectedWidth;
      },
      [minSeconds, width],
      { timeout: timeoutMs, polling: 250 },
    );
    result.ok = true;
  } catch (error) {
    result.error = String(error.message ?? error).split('\n')[0];
  }
  const state = await page.evaluate(() => {
    const video = document.getElementById('video');
    if (video === null) return null;
    return {
      currentTime: video.currentTime, videoWidth: video.videoWidth, videoHeight: video.videoHeight,
      readyState: video.readyState, mediaError: video.error ? video.error.code : null,
    };
  });
  if (state === null) {
    result.ok = false;
    result.error = result.error ?? 'the page has no <video id="video">';
  } else {
    Object.assign(result, state);
  }
} catch (error) {
  result.ok = false;
  result.error = String(error.message ?? error).split('\n')[0];
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
