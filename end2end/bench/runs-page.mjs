// The runs-page benchmark (run by `make bench`, which sets the servers up).
// Prints medians and 90th percentiles; it measures, it does not judge.
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const mlflowUrl = process.env.BENCH_MLFLOW_URL;
const slipwayUrl = process.env.BENCH_SLIPWAY_URL;
const experimentName = process.env.BENCH_EXPERIMENT;
const SERVER_ROUNDS = 15;
const BROWSER_ROUNDS = 5;
const PAGE_ROWS = 100;
const session = await signIn(process.env.BENCH_USER, process.env.BENCH_PASSWORD);

const experiment = await mlflow(`experiments/get-by-name?experiment_name=${encodeURIComponent(experimentName)}`);
const experimentId = experiment.experiment.experiment_id;
const newest = (await searchRuns(null)).runs[0].info.run_name;

console.log(`experiment ${experimentName} (${experimentId}); newest run ${newest}\n`);
console.log('Server side: 100 runs, milliseconds (median / p90)');
const variants = [
  { name: 'newest first', order: null, page: '' },
  { name: 'sorted by metric auc', order: 'metrics.`auc` DESC', page: '&order=metrics.auc&dir=desc' },
];
const serverRows = [];
for (const variant of variants) {
  const raw = [];
  const rendered = [];
  // One untimed round each warms MLflow's worker and Slipway's connections.
  await searchRuns(variant.order);
  await slipwayPage(variant.page);
  for (let round = 0; round < SERVER_ROUNDS; round++) {
    raw.push(await timed(async () => assert.equal((await searchRuns(variant.order)).runs.length, PAGE_ROWS)));
    rendered.push(await timed(async () => {
      const html = await slipwayPage(variant.page);
      assert.equal(html.split('<td class="name">').length - 1, PAGE_ROWS);
    }));
  }
  serverRows.push({
    variant: variant.name,
    'MLflow runs/search': summary(raw),
    'Slipway page (SSR)': summary(rendered),
    'overhead (median)': (median(rendered) - median(raw)).toFixed(1),
  });
}
console.table(serverRows);

console.log('\nBrowser: milliseconds from navigation until the newest run is visible (median / p90)');
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const slipwayTimes = [];
const mlflowTimes = [];
for (let round = 0; round < BROWSER_ROUNDS + 1; round++) {
  const slipway = await timeToVisible(browser, `${slipwayUrl}/experiments/${experimentId}?size=${PAGE_ROWS}`,
    (page) => page.locator('td.name a', { hasText: newest }));
  const mlflowUi = await timeToVisible(browser, `${mlflowUrl}/#/experiments/${experimentId}/runs`,
    (page) => page.locator('.ag-row').getByText(newest, { exact: true }));
  if (round > 0) { // the first round only warms the servers
    slipwayTimes.push(slipway);
    mlflowTimes.push(mlflowUi);
  }
}
await browser.close();
console.table([
  { page: 'Slipway /experiments/{id}', 'time to table': summary(slipwayTimes) },
  { page: "MLflow's UI (#/experiments/{id}/runs)", 'time to table': summary(mlflowTimes) },
]);
console.log(`\nSlipway needs ${(100 * median(slipwayTimes) / median(mlflowTimes)).toFixed(0)}% of MLflow's UI time (target: at most 33%).`);
console.log(`Server-side overheads (target: at most 30 ms): ${serverRows.map((row) => `${row.variant} ${row['overhead (median)']} ms`).join(', ')}.`);

async function timeToVisible(browser, url, locate) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  if (url.startsWith(slipwayUrl)) {
    await context.addCookies([{ name: session.name, value: session.value, url: slipwayUrl }]);
  }
  const page = await context.newPage();
  const started = performance.now();
  await page.goto(url, { waitUntil: 'commit' });
  await locate(page).first().waitFor({ state: 'visible', timeout: 120_000 });
  const elapsed = performance.now() - started;
  await context.close();
  return elapsed;
}

async function searchRuns(order) {
  const body = { experiment_ids: [experimentId], max_results: PAGE_ROWS };
  if (order) body.order_by = [order];
  const response = await fetch(`${mlflowUrl}/api/2.0/mlflow/runs/search`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  assert.ok(response.ok, `runs/search: ${response.status}`);
  return response.json();
}

/** Signs in through the login form, as a browser without JavaScript would. */
async function signIn(name, password) {
  const response = await fetch(`${slipwayUrl}/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: slipwayUrl },
    body: new URLSearchParams({ name, password, next: '/experiments' }),
  });
  const cookie = response.headers.getSetCookie().find((line) => line.startsWith('slipway_session='));
  assert.ok(cookie, `signing in: ${response.status}`);
  const [nameValue] = cookie.split(';');
  const [cookieName, value] = nameValue.split('=');
  return { name: cookieName, value, header: nameValue };
}

async function slipwayPage(query) {
  const response = await fetch(`${slipwayUrl}/experiments/${experimentId}?size=${PAGE_ROWS}${query}`, {
    headers: { cookie: session.header },
  });
  assert.ok(response.ok, `Slipway: ${response.status}`);
  return response.text();
}

async function mlflow(path) {
  const response = await fetch(`${mlflowUrl}/api/2.0/mlflow/${path}`);
  assert.ok(response.ok, `${path}: ${response.status}`);
  return response.json();
}

async function timed(action) {
  const started = performance.now();
  await action();
  return performance.now() - started;
}

function median(values) {
  return percentile(values, 50);
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function summary(values) {
  return `${median(values).toFixed(1)} / ${percentile(values, 90).toFixed(1)}`;
}
