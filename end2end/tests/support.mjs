// Shared by the browser tests: a Slipway of their own on a free port, against
// the real MLflow that `make test` started, and Debian's Chromium.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const mlflowUrl = required('SLIPWAY_TEST_MLFLOW_URL');

export function uniqueName(prefix) {
  return `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
}

export const demoCatalog = fileURLToPath(new URL('../../deploy/demo/catalog.toml', import.meta.url));

/** One account per role, named after it, as `make run` makes them. */
export const roles = ['viewer', 'trainer', 'deployer', 'approver', 'admin'];
export const password = 'correct horse battery';

/** Starts Slipway and Chromium; `stop()` ends both. `env` adds settings. */
export async function startSlipway(env = () => ({})) {
  const dataDir = mkdtempSync(join(tmpdir(), 'slipway-e2e-'));
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const settings = {
    ...process.env,
    SLIPWAY_LISTEN: `127.0.0.1:${port}`,
    SLIPWAY_GATEWAY_LISTEN: '127.0.0.1:0',
    SLIPWAY_MLFLOW_URI: mlflowUrl,
    SLIPWAY_DATA_DIR: dataDir,
    SLIPWAY_SITE_ROOT: required('SLIPWAY_SITE_ROOT'),
    // The demo's catalog: its profiles and the diabetes project.
    SLIPWAY_CATALOG: demoCatalog,
    ...env(baseUrl),
  };
  for (const role of roles) {
    const added = spawnSync(required('SLIPWAY_BIN'), ['users', 'add', role, '--role', role], {
      env: settings,
      input: `${password}\n`,
      encoding: 'utf8',
    });
    assert.equal(added.status, 0, `users add ${role}: ${added.stdout}${added.stderr}`);
  }
  const slipway = spawn(required('SLIPWAY_BIN'), [], {
    env: settings,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Passed through as it comes, and kept: a panic fails the suite.
  let output = '';
  for (const stream of [slipway.stdout, slipway.stderr]) {
    stream.on('data', (chunk) => {
      output += chunk;
      process.stderr.write(chunk);
    });
  }
  await waitUntilReady(slipway, `${baseUrl}/readyz`, 60_000);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  // One browser profile per account (and with or without JavaScript),
  // signed in through the sign-in page.
  const sessions = new Map();
  async function signedIn(user, javaScriptEnabled) {
    const key = `${user} ${javaScriptEnabled}`;
    if (!sessions.has(key)) {
      const context = await browser.newContext({ javaScriptEnabled });
      const page = await context.newPage();
      await signIn(page, baseUrl, user);
      await page.close();
      sessions.set(key, context);
    }
    return sessions.get(key);
  }
  return {
    baseUrl,
    browser,
    /** What Slipway printed so far. */
    log: () => output,
    /**
     * A new tab on `path` as `as` (an account named after its role), once
     * the app has hydrated without script errors; or, with `javaScript:
     * false`, in a browser that runs no script at all.
     */
    async open(path, { as = 'admin', javaScript = true } = {}) {
      const page = await (await signedIn(as, javaScript)).newPage();
      const errors = [];
      page.on('pageerror', (error) => errors.push(error.message));
      // The page's Content-Security-Policy lets through all it needs.
      page.on('console', (message) => {
        if (message.type() === 'error' && message.text().includes('Content Security Policy')) {
          errors.push(message.text());
        }
      });
      await page.goto(`${baseUrl}${path}`);
      if (javaScript) {
        await page.waitForSelector('body[data-hydrated="true"]', { timeout: 30_000 });
        assert.deepEqual(errors, [], 'no script errors while hydrating');
      }
      return page;
    },
    async stop() {
      await browser.close();
      // Slipway stops its model servers on the way out; let it finish first.
      const exited = new Promise((resolve) => slipway.once('exit', resolve));
      slipway.kill('SIGTERM');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
      // A panic in Slipway (a handler, a background task) is a bug, whatever
      // the test was about.
      assert.ok(!output.includes('panicked at'), `Slipway panicked:\n${output}`);
    },
  };
}

/** Fills in and sends the sign-in form, as a person would. */
export async function signIn(page, baseUrl, user, secret = password) {
  await page.goto(`${baseUrl}/login`);
  await page.fill('#name', user);
  await page.fill('#password', secret);
  await Promise.all([page.waitForNavigation(), page.click('form.login-form button[type="submit"]')]);
}

/** MLflow's own REST API, as a user's script would call it. */
export async function mlflow(path, body) {
  const response = await fetch(`${mlflowUrl}/api/2.0/mlflow/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

/** Retries `check` until it passes: pages update asynchronously. */
export async function eventually(check, timeoutMs = 15_000) {
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

export async function cellTexts(page, selector) {
  return (await page.locator(selector).allTextContents()).map((text) => text.trim());
}

async function waitUntilReady(process, url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (process.exitCode !== null) throw new Error(`Slipway exited with ${process.exitCode}`);
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

export function freePort() {
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
