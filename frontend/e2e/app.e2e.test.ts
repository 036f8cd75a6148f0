/**
 * End to end in Debian's chromium (playwright-core) against the real API, a real Celery worker
 * and the production Next.js server. Run by `make test` after `next build`.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ARTIFACTS, Stack } from './stack';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];
const IMAGES = join(ARTIFACTS, 'images');
const DESKTOP = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };

const stack = new Stack();
let browser: Browser;
let context: BrowserContext;
let page: Page;
let failed = false;
/** Job polls the page made: GET /api/v1/jobs/{id}, with their wait and If-None-Match. */
const polls: { wait: string | null; etag: string | undefined; at: number }[] = [];
/** When job polls were given up by the page (aborted). */
const abortedPolls: number[] = [];
/** Console errors and uncaught exceptions (failed requests the app handles are not counted). */
const pageErrors: string[] = [];

/** Poll a value until the assertion holds (web-first assertions are @playwright/test's, not core's). */
function eventually<T>(value: () => Promise<T> | T, timeout = 15_000) {
  return expect.poll(value, { timeout, interval: 100 });
}

function card(filename: string): Locator {
  return page.locator('[data-testid="job-card"]', { has: page.getByRole('heading', { name: filename, exact: true }) });
}

async function expectStatus(filename: string, status: string, timeout = 60_000): Promise<void> {
  await card(filename).and(page.locator(`[data-status="${status}"]`)).waitFor({ timeout });
}

async function pickFiles(...names: string[]): Promise<void> {
  await page.getByTestId('file-input').setInputFiles(names.map((name) => join(IMAGES, name)));
}

/** Drag files from "outside" onto the drop zone, as a desktop file manager would. */
async function dropFiles(...names: string[]): Promise<void> {
  const files = names.map((name) => ({
    name,
    type: name.endsWith('.png') ? 'image/png' : name.endsWith('.gif') ? 'image/gif' : 'image/jpeg',
    base64: readFileSync(join(IMAGES, name)).toString('base64'),
  }));
  const dataTransfer = await page.evaluateHandle((list) => {
    const transfer = new DataTransfer();
    for (const file of list) {
      const bytes = Uint8Array.from(atob(file.base64), (c) => c.charCodeAt(0));
      transfer.items.add(new File([bytes], file.name, { type: file.type }));
    }
    return transfer;
  }, files);
  const zone = page.getByTestId('drop-zone');
  await zone.dispatchEvent('dragenter', { dataTransfer });
  await eventually(() => zone.getAttribute('data-dragging')).toBe('true');
  await zone.dispatchEvent('drop', { dataTransfer });
}

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  stack.makeImages(IMAGES);
  await stack.up();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  context = await browser.newContext({ viewport: DESKTOP, colorScheme: 'light', acceptDownloads: true });
  page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (request.method() === 'GET' && /^\/api\/v1\/jobs\/[0-9a-f-]{36}$/.test(url.pathname)) {
      polls.push({ wait: url.searchParams.get('wait'), etag: request.headers()['if-none-match'], at: Date.now() });
    }
  });
  page.on('requestfailed', (request) => {
    if (/\/api\/v1\/jobs\/[0-9a-f-]{36}\?wait=/.test(request.url())) abortedPolls.push(Date.now());
  });
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      pageErrors.push(message.text());
    }
  });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(stack.webUrl);
}, 240_000);

afterAll(async () => {
  if (failed) console.error(`service logs:\n${stack.logs()}`);
  await browser?.close();
  await stack.down();
}, 60_000);

function step(name: string, body: () => Promise<void>, timeout = 120_000) {
  it(name, async () => {
    try {
      await body();
    } catch (error) {
      failed = true;
      await page?.screenshot({ path: join(ARTIFACTS, `failure-${name.replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => undefined);
      throw error;
    }
  }, timeout);
}

describe('imgconv in a real browser', () => {
  step('gets a token and shows the service status', async () => {
    await page.getByTestId('status-strip').locator('visible=true').getByText('0 workers online').waitFor();
    const token = await page.evaluate(() => window.localStorage.getItem('imgconv.token'));
    expect(token).toBeTruthy();
  });

  step('a queued job can be canceled', async () => {
    // No worker is running yet, so the job stays queued until we cancel it.
    await pickFiles('waiting.bmp');
    await page.getByRole('button', { name: /Convert 1 file/ }).click();
    await expectStatus('waiting.bmp', 'queued');
    // The original is shown while the job waits.
    const original = card('waiting.bmp').getByTestId('thumb-source');
    await eventually(() => original.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBe(400);
    await page.screenshot({ path: join(ARTIFACTS, 'convert-desktop-light-queued.png') });
    // It is watched with a long poll carrying its ETag...
    await eventually(() => polls.some((poll) => poll.wait === '25' && poll.etag)).toBe(true);
    // ...which stops while the tab is hidden and starts again when it is shown.
    const setVisibility = (state: 'hidden' | 'visible') =>
      page.evaluate((value) => {
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => value });
        document.dispatchEvent(new Event('visibilitychange', { bubbles: true }));
      }, state);
    // Timestamps first: the page reacts within the evaluate, before it returns.
    const hiddenAt = Date.now();
    await setVisibility('hidden');
    // The long poll in flight is given up at once, not left to run its 25 s.
    await eventually(() => abortedPolls.some((at) => at >= hiddenAt), 3000).toBe(true);
    await page.waitForTimeout(3000);
    expect(polls.filter((poll) => poll.at > hiddenAt + 200)).toEqual([]);
    const shownAt = Date.now();
    await setVisibility('visible');
    await eventually(() => polls.filter((poll) => poll.at >= shownAt).length, 5000).toBeGreaterThan(0);

    await card('waiting.bmp').getByRole('button', { name: 'Cancel waiting.bmp' }).click();
    await expectStatus('waiting.bmp', 'canceled', 15_000);
    await eventually(() => page.getByTestId('live-region').textContent()).toMatch(/waiting\.bmp: canceled/);
  });

  step('three images of different formats are converted to WebP', async () => {
    await stack.startWorker();
    await page.getByLabel('Convert to').selectOption('webp');
    await page.getByLabel('Quality').fill('70');
    await page.getByLabel('Max width').fill('400');
    await dropFiles('sunset.png', 'forest.jpg');
    await pickFiles('badge.gif');
    await eventually(() => page.getByTestId('upload-item').count()).toBe(3);
    await page.getByRole('button', { name: 'Convert 3 files to WebP' }).click();
    for (const name of ['sunset.png', 'forest.jpg', 'badge.gif']) await expectStatus(name, 'completed');
    await eventually(() => page.getByTestId('upload-item').count()).toBe(0);

    const forest = card('forest.jpg');
    await forest.getByText('JPEG → WEBP').waitFor();
    // Fit inside 400 wide, aspect kept, never upscaled.
    await eventually(() => forest.getByTestId('job-dimensions').textContent()).toBe('800×600 → 400×300');
    await eventually(() => card('badge.gif').getByTestId('job-dimensions').textContent()).toBe('320×240');
    await eventually(() => forest.getByTestId('job-saving').textContent()).toMatch(/\(([−+])\d+(\.\d)?%\)/);
    // Thumbnails come from the authenticated /source and /result as blobs.
    const thumb = forest.getByTestId('thumb-result');
    await thumb.waitFor();
    await eventually(() => thumb.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0);
    await page.getByTestId('status-strip').locator('visible=true').getByText('1 worker online').waitFor({ timeout: 30_000 });
  }, 180_000);

  step('a result downloads under its own name, in the requested format', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      card('forest.jpg').getByTestId('job-download').click(),
    ]);
    expect(download.suggestedFilename()).toBe('forest.webp');
    const saved = join(ARTIFACTS, 'downloads', download.suggestedFilename());
    await download.saveAs(saved);
    const bytes = readFileSync(saved);
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('RIFF');
    expect(bytes.subarray(8, 12).toString('latin1')).toBe('WEBP');
  });

  step('download all gives a zip of the completed results', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-all').click()]);
    expect(download.suggestedFilename()).toMatch(/^imgconv-.*\.zip$/);
    const saved = join(ARTIFACTS, 'downloads', 'all.zip');
    await download.saveAs(saved);
    const zip = readFileSync(saved);
    expect(zip.subarray(0, 2).toString('latin1')).toBe('PK');
    for (const name of ['sunset.webp', 'forest.webp', 'badge.webp']) expect(zip.includes(Buffer.from(name))).toBe(true);
  });

  step('a text file named .jpg is refused with a clear reason next to it', async () => {
    await pickFiles('notes.jpg');
    await page.getByRole('button', { name: 'Convert 1 file to WebP' }).click();
    const item = page.locator('[data-testid="upload-item"][data-filename="notes.jpg"]');
    await item.and(page.locator('[data-status="rejected"]')).waitFor();
    const error = item.getByTestId('upload-error');
    await eventually(() => error.getAttribute('data-code')).toBe('not_an_image');
    await eventually(() => error.textContent()).toMatch(/not a .*image/i);
    await page.screenshot({ path: join(ARTIFACTS, 'convert-desktop-light-refused.png') });
    await eventually(() => card('notes.jpg').count()).toBe(0);
    // Sending it again cannot help, so there is nothing to convert.
    expect(await page.getByTestId('convert-button').isDisabled()).toBe(true);
  });

  step('jobs come back after a reload', async () => {
    await page.reload();
    for (const name of ['sunset.png', 'forest.jpg', 'badge.gif']) await expectStatus(name, 'completed', 20_000);
    await expectStatus('waiting.bmp', 'canceled', 20_000);
    await eventually(() => page.getByTestId('job-card').count()).toBe(4);
  });

  step('the history pages through jobs and filters by status', async () => {
    await page.getByRole('link', { name: 'History' }).click();
    await eventually(() => page.getByTestId('history-row').count()).toBe(4);
    await page.getByLabel('Status', { exact: true }).selectOption('completed');
    await eventually(() => page.url()).toMatch(/status=completed/);
    await eventually(() => page.getByTestId('history-row').count()).toBe(3);
    await page.getByLabel('Status', { exact: true }).selectOption('canceled');
    await eventually(() => page.getByTestId('history-row').count()).toBe(1);
    await eventually(() => page.getByTestId('history-row').getAttribute('data-status')).toBe('canceled');
    await page.screenshot({ path: join(ARTIFACTS, 'history-desktop-light.png'), fullPage: true });

    // Cursor pages of two: newest first, no overlap, and back again.
    await page.goto(`${stack.webUrl}/history?per_page=2`);
    const names = () => page.getByTestId('history-row').locator('td:first-child div:first-child').allTextContents();
    await eventually(names).toHaveLength(2);
    const first = await names();
    await page.getByTestId('history-next').click();
    await eventually(async () => (await names()).join()).not.toBe(first.join());
    const second = await names();
    expect(second).toHaveLength(2);
    expect(new Set([...first, ...second]).size).toBe(4);
    await eventually(() => page.getByTestId('history-next').isDisabled()).toBe(true);
    await page.getByTestId('history-newer').click();
    await eventually(async () => (await names()).join()).toBe(first.join());
  });

  step('works from the keyboard, with labelled controls and a live region', async () => {
    await page.goto(stack.webUrl);
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content');
    // The file picker is reachable by Tab and named by its visible text.
    let reached = false;
    for (let i = 0; i < 15 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => (document.activeElement as HTMLInputElement | null)?.type === 'file');
    }
    expect(reached).toBe(true);
    const ring = await page.getByText('Drop images here or click to choose').evaluate(
      (node) => getComputedStyle(node.closest('label')!).boxShadow,
    );
    expect(ring).not.toBe('none');
    for (const label of ['Convert to', 'Quality', 'Max width', 'Max height', 'Strip metadata']) {
      expect(await page.getByLabel(label, { exact: true }).count()).toBe(1);
    }
    expect(await page.getByTestId('live-region').getAttribute('aria-live')).toBe('polite');
  });

  step('deleting a finished job removes it', async () => {
    await page.getByRole('link', { name: 'Convert' }).click();
    await card('waiting.bmp').getByRole('button', { name: 'Delete waiting.bmp' }).click();
    await eventually(() => card('waiting.bmp').count()).toBe(0);
    await page.reload();
    await expectStatus('forest.jpg', 'completed');
    await eventually(() => card('waiting.bmp').count()).toBe(0);
  });

  step('light and dark themes on desktop and phone', async () => {
    const storageState = await context.storageState();
    for (const [label, viewport] of [
      ['desktop', DESKTOP],
      ['phone', PHONE],
    ] as const) {
      const shotContext = await browser.newContext({ viewport, colorScheme: 'light', storageState, isMobile: label === 'phone', hasTouch: label === 'phone' });
      const shot = await shotContext.newPage();
      await shot.goto(stack.webUrl);
      await shot.locator('[data-testid="job-card"][data-status="completed"]').first().waitFor();
      // Thumbnails load lazily: on a phone the list is below the fold.
      await shot.getByTestId('job-list').scrollIntoViewIfNeeded();
      // Every visible thumbnail has loaded before the picture is taken.
      await eventually(() =>
        shot.evaluate(() => {
          const images = [...document.querySelectorAll<HTMLImageElement>('[data-testid^="thumb-"]')];
          const visible = images.filter((img) => img.offsetParent !== null);
          return visible.length >= 3 && visible.every((img) => img.complete && img.naturalWidth > 0);
        }),
      ).toBe(true);
      // Back to the top, so the sticky header sits at the top of the full-page picture.
      await shot.evaluate(() => window.scrollTo(0, 0));
      // Nothing may overflow sideways at phone width.
      const overflow = await shot.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow).toBeLessThanOrEqual(0);
      await shot.screenshot({ path: join(ARTIFACTS, `convert-${label}-light.png`), fullPage: true });
      await shot.getByRole('button', { name: 'Switch to dark theme' }).click();
      await eventually(() => shot.locator('html').getAttribute('class')).toMatch(/dark/);
      await shot.screenshot({ path: join(ARTIFACTS, `convert-${label}-dark.png`), fullPage: true });
      // The theme is remembered across pages; the history fits the width too.
      await shot.getByRole('link', { name: 'History' }).click();
      await eventually(() => shot.getByTestId('history-row').count()).toBe(3);
      await eventually(() => shot.locator('html').getAttribute('class')).toMatch(/dark/);
      expect(await shot.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
      await shot.screenshot({ path: join(ARTIFACTS, `history-${label}-dark.png`), fullPage: true });
      await shotContext.close();
    }
  });

  step('each file shows its upload progress', async () => {
    // A 2.3 MB file on a throttled uplink takes a few seconds: long enough to watch.
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 20,
      downloadThroughput: -1,
      uploadThroughput: 600 * 1024,
    });
    await pickFiles('noise.png');
    await page.getByRole('button', { name: 'Convert 1 file to WebP' }).click();
    const bar = page.getByRole('progressbar', { name: 'Uploading noise.png' });
    await eventually(async () => Number((await bar.getAttribute('aria-valuenow').catch(() => null)) ?? 0)).toBeGreaterThan(0);
    const midway = Number(await bar.getAttribute('aria-valuenow'));
    expect(midway).toBeLessThan(100);
    await page.screenshot({ path: join(ARTIFACTS, 'convert-desktop-light-uploading.png') });
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await expectStatus('noise.png', 'completed');
  });

  step('no errors in the browser console', async () => {
    expect(pageErrors).toEqual([]);
  });
});
