// The browsing walk, on data made through MLflow's own API: experiments →
// runs (next page, filter, sort) → a run and its chart → compare two runs →
// models → a model → a version. Walked with JavaScript and without: every
// page arrives complete, so a browser that runs no script sees the same.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cellTexts, eventually, mlflow, mlflowUrl, startSlipway, uniqueName } from './support.mjs';

const registerScript = fileURLToPath(new URL('../../server/tests/fixtures/register_model.py', import.meta.url));

const experimentName = uniqueName('walk');
const modelName = uniqueName('walk-model');
const LOSS_POINTS = 8;
const RUNS = 27; // one more page than the default 25
let app;

before(async () => {
  const { experiment_id: experimentId } = await mlflow('experiments/create', { name: experimentName });
  const runIds = [];
  for (let index = 0; index < RUNS; index++) {
    runIds.push(await createRun(experimentId, index));
  }
  await mlflow('registered-models/create', { name: modelName });
  for (const runId of runIds.slice(0, 2)) {
    const logged = await mlflow('logged-models', { experiment_id: experimentId, name: 'model', source_run_id: runId });
    const modelId = logged.model.info.model_id;
    await mlflow('model-versions/create', { name: modelName, source: `models:/${modelId}`, run_id: runId, model_id: modelId });
  }
  await mlflow('model-versions/transition-stage', { name: modelName, version: '2', stage: 'Production', archive_existing_versions: false });
  await mlflow('registered-models/alias', { name: modelName, alias: 'champion', version: '2' });
  app = await startSlipway();
});

after(() => app?.stop());

for (const javaScript of [true, false]) {
  test(`browse from an experiment to its runs, a run, a comparison, and the registry ${javaScript ? 'with' : 'without'} JavaScript`,
    () => browse(javaScript));
}

async function browse(javaScript) {
  const page = await app.open(`/experiments?q=${experimentName}`, { javaScript });
  await page.locator('td.name a', { hasText: experimentName }).click();
  await page.waitForURL(/\/experiments\/\d+$/);
  await page.locator('h1', { hasText: experimentName }).waitFor();
  await eventually(async () => assert.equal((await cellTexts(page, 'td.name')).length, 25));

  await page.locator('a[rel="next"]').click();
  await eventually(async () => assert.deepEqual(await cellTexts(page, 'td.name'), ['run-01', 'run-00']));

  await page.locator('input[name="filter"]').fill('metrics.auc > 0.2');
  await page.getByRole('button', { name: 'Search' }).click();
  const newestFirst = ['run-26', 'run-25', 'run-24', 'run-23', 'run-22', 'run-21'];
  await eventually(async () => assert.deepEqual(await cellTexts(page, 'td.name'), newestFirst));

  await page.locator('th a', { hasText: 'auc' }).click();
  await page.locator('th[aria-sort="descending"]', { hasText: 'auc' }).waitFor();
  await page.locator('th a', { hasText: 'auc' }).click();
  await page.locator('th[aria-sort="ascending"]', { hasText: 'auc' }).waitFor();
  await eventually(async () => assert.deepEqual(await cellTexts(page, 'td.name'), [...newestFirst].reverse()));

  await page.locator('td.name a', { hasText: 'run-21' }).click();
  await page.waitForURL(/\/runs\/[0-9a-f]+$/);
  await page.locator('h1', { hasText: 'run-21' }).waitFor();
  assert.equal(await page.locator('nav.crumbs a').last().textContent(), experimentName, 'the breadcrumb names the experiment');
  const lossLine = page.locator('figure[data-metric="loss"] polyline[stroke-width="2"]');
  await lossLine.first().waitFor();
  const points = (await lossLine.first().getAttribute('points')).trim().split(/\s+/);
  assert.equal(points.length, LOSS_POINTS, 'the chart draws every recorded value');
  // One value is a number, not a dot on an empty chart.
  assert.equal(await page.locator('figure[data-metric="auc"] svg').count(), 0);
  assert.equal(await page.locator('figure[data-metric="auc"] .single-value .value').textContent(), '0.21');
  assert.equal(
    await page.locator('figure[data-metric="loss"] .hover circle title').first().textContent(),
    'run-21 · step 0: 2',
    'a value on hover',
  );

  await page.goBack();
  await page.locator('th[aria-sort="ascending"]', { hasText: 'auc' }).waitFor();
  await page.getByRole('checkbox', { name: 'Select run-21' }).check();
  await page.getByRole('checkbox', { name: 'Select run-22' }).check();
  await page.getByRole('button', { name: 'Compare selected' }).click();
  await page.waitForURL(/\/compare\?runs=/);
  await eventually(async () => assert.deepEqual(await cellTexts(page, 'table.compare thead th a'), ['run-21', 'run-22']));
  assert.match(await page.locator('tr.differs').first().textContent(), /lr/);
  await eventually(async () =>
    assert.equal(await page.locator('figure[data-metric="loss"] polyline[stroke-width="2"]').count(), 4, 'two lines and their legend'));

  await page.locator('header nav a', { hasText: 'Models' }).click();
  await page.locator('input[name="q"]').fill(modelName);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('td.name a', { hasText: modelName }).click();
  await page.waitForURL(/\/models\/[^/]+$/);
  await eventually(async () => assert.deepEqual(await cellTexts(page, 'td.name'), ['v2', 'v1']));
  await page.locator('td.name a', { hasText: 'v2' }).click();
  await page.locator('h1', { hasText: `${modelName} v2` }).waitFor();
  assert.equal(await page.locator('dd .stage-production').textContent(), 'Production');
  assert.match(await page.locator('dl.facts').textContent(), /@champion/);
  assert.match(await page.locator('dl.facts').textContent(), /mlflow-artifacts:\/.*\/models\/m-/);
  assert.equal(await page.locator('.loading').count(), 0, 'nothing left loading');
  await page.close();
}

async function createRun(experimentId, index) {
  const name = `run-${String(index).padStart(2, '0')}`;
  const { run } = await mlflow('runs/create', { experiment_id: experimentId, run_name: name, start_time: 1_000 + index });
  const runId = run.info.run_id;
  const loss = Array.from({ length: LOSS_POINTS }, (_, step) => ({ key: 'loss', value: (LOSS_POINTS - step) / 4, timestamp: 2_000 + step, step }));
  await mlflow('runs/log-batch', {
    run_id: runId,
    params: [{ key: 'lr', value: index % 2 === 0 ? '0.1' : '0.01' }],
    metrics: [...loss, { key: 'auc', value: index / 100, timestamp: 3_000, step: 0 }],
  });
  await mlflow('runs/update', { run_id: runId, status: 'FINISHED', end_time: 9_000 + index });
  return runId;
}

/** The smallest valid PNG: one transparent pixel. */
const PIXEL_PNG = Buffer.from(
  '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6300010000050001'
  + '0d0a2db40000000049454e44ae426082',
  'hex',
);

test('open a run\'s image and a logged model\'s MLmodel with its signature, without JavaScript', async () => {
  const { run } = await mlflow('runs/create', { experiment_id: '0', run_name: uniqueName('pictured') });
  const runId = run.info.run_id;
  const upload = await fetch(`${mlflowUrl}/api/2.0/mlflow-artifacts/artifacts/0/${runId}/artifacts/plots/roc.png`, {
    method: 'PUT',
    body: PIXEL_PNG,
  });
  assert.ok(upload.ok, `upload: ${upload.status}`);

  const page = await app.open(`/runs/${runId}`, { javaScript: false });
  await page.getByRole('link', { name: 'plots/' }).click();
  await page.getByRole('link', { name: 'roc.png' }).click();
  await page.locator('h1', { hasText: 'plots/roc.png' }).waitFor();
  const image = page.locator('img.artifact-image');
  await eventually(async () => assert.equal(await image.evaluate((img) => img.complete && img.naturalWidth), 1, 'the image loads'));
  assert.match(await page.getByRole('link', { name: 'Download' }).getAttribute('href'), /\/artifact\/raw\?path=plots%2Froc\.png$/);
  await page.close();

  // A logged model's files: its MLmodel, signature first.
  const loggedRun = execFileSync('python', [registerScript, mlflowUrl, '-', uniqueName('walk-logged'), '1'], { encoding: 'utf8' })
    .trim().split('\n').pop().trim();
  const runPage = await app.open(`/runs/${loggedRun}`, { javaScript: false });
  await runPage.locator('dd.mono a').first().click();
  await runPage.getByRole('link', { name: 'MLmodel' }).click();
  await runPage.locator('h1', { hasText: 'MLmodel' }).waitFor();
  const signature = await cellTexts(runPage, 'table.signature td.mono');
  assert.deepEqual(signature, ['tensor float64 [-1,2]', 'tensor float64 [-1]']);
  assert.match(await runPage.locator('pre.artifact-text').textContent(), /flavors:/);
  await runPage.close();
});

test('charts follow the dark colour scheme', async () => {
  const page = await app.open(`/experiments?q=${experimentName}`);
  await page.locator('td.name a', { hasText: experimentName }).click();
  await page.locator('td.name a', { hasText: 'run-26' }).click();
  await page.locator('h1', { hasText: 'run-26' }).waitFor();
  const colours = () => page.locator('figure[data-metric="loss"]').evaluate((figure) => ({
    background: getComputedStyle(figure.querySelector('svg rect')).fill,
    text: getComputedStyle(figure.querySelector('svg text')).fill,
    caption: getComputedStyle(figure.querySelector('figcaption')).color,
  }));
  await page.emulateMedia({ colorScheme: 'light' });
  const light = await colours();
  assert.equal(light.background, 'rgb(255, 255, 255)');
  await page.emulateMedia({ colorScheme: 'dark' });
  const dark = await colours();
  assert.equal(dark.background, 'rgb(22, 26, 33)', 'a dark chart area');
  assert.equal(dark.text, 'rgb(195, 202, 213)', 'light labels on it');
  assert.equal(dark.caption, 'rgb(228, 232, 238)');
  await page.close();
});
