// Browser test: Debian's Chromium, driven by playwright-core, against the
// built Slipway binary and the real MLflow that `make test` started.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const mlflowUrl = required('SLIPWAY_TEST_MLFLOW_URL');
const slipwayBin = required('SLIPWAY_BIN');
const siteRoot = required('SLIPWAY_SITE_ROOT');

const prefix = `e2e-${Math.random().toString(36).slice(2, 10)}`;
const created = Array.from({ length: 7 }, (_, index) => `${prefix}-${index}`);

let slipway;
let baseUrl;
let browser;
let dataDir;

before(async () => {
  for (const name of created) {
    await mlflow('experiments/create', { name, tags: [{ key: 'suite', value: 'e2e' }] });
  }
  dataDir = mkdtempSync(join(tmpdir(), 'slipway-e2e-'));
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  slipway = spawn(slipwayBin, [], {
    env: {
      ...process.env,
      SLIPWAY_LISTEN: `127.0.0.1:${port}`,
      SLIPWAY_MLFLOW_URI: mlflowUrl,
      SLIPWAY_DATA_DIR: dataDir,
      SLIPWAY_SITE_ROOT: siteRoot,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  await waitUntilReady(`${baseUrl}/readyz`, 60_000);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
  slipway?.kill('SIGTERM');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test('lists experiments created through MLflow and pages through them in the hydrated app', async () => {
  const page = await openPage(`/experiments?q=${prefix}&size=5`);
  const firstPage = await listedNames(page);
  assert.equal(firstPage.length, 5);
  assert.ok(firstPage.every((name) => created.includes(name)), firstPage.join(', '));
  assert.equal(await page.locator('a[rel="prev"]').count(), 0);

  // A marker on window survives only if the router navigates in place.
  await page.evaluate(() => { window.slipwaySameDocument = true; });
  await page.locator('a[rel="next"]').click();
  await page.waitForURL(/[?&]page=/);
  await page.locator('.page-number', { hasText: 'Page 2' }).waitFor();
  const secondPage = await listedNames(page);
  assert.equal(secondPage.length, 2);
  assert.deepEqual([...firstPage, ...secondPage].sort(), [...created].sort());
  assert.equal(await page.evaluate(() => window.slipwaySameDocument), true, 'client-side navigation');
  assert.equal(await page.locator('a[rel="next"]').count(), 0);

  await page.locator('a[rel="prev"]').click();
  await page.locator('.page-number', { hasText: 'Page 1' }).waitFor();
  assert.deepEqual(await listedNames(page), firstPage);
  await page.close();
});

test('the search form finds experiments by part of their name, in any case', async () => {
  const page = await openPage('/experiments');
  await page.locator('input[name="q"]').fill(prefix.toUpperCase());
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL((url) => url.searchParams.get('q') === prefix.toUpperCase());
  // The unfiltered list stays on screen until the filtered one arrives.
  await eventually(async () => {
    assert.deepEqual((await listedNames(page)).sort(), [...created].sort());
  });
  assert.equal(await page.locator('.results').getAttribute('aria-busy'), 'false');
  assert.equal(await page.locator('.tag', { hasText: 'suite=e2e' }).count(), created.length);
  await page.close();
});

async function openPage(path) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${baseUrl}${path}`);
  await page.waitForSelector('body[data-hydrated="true"]', { timeout: 30_000 });
  assert.deepEqual(errors, [], 'no script errors while hydrating');
  return page;
}

async function eventually(check, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function listedNames(page) {
  return page.locator('td.name').allTextContents();
}

async function mlflow(path, body) {
  const response = await fetch(`${mlflowUrl}/api/2.0/mlflow/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

async function waitUntilReady(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (slipway.exitCode !== null) throw new Error(`Slipway exited with ${slipway.exitCode}`);
    try {
      const response = await fetch(url);
      if (response.ok) return;
      last = `${response.status} ${await response.text()}`;
    } catch (error) {
      last = error.message;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms: ${last}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests with \`make test\``);
  return value;
}
