// The experiments list: listing, paging, searching.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cellTexts, eventually, mlflow, startSlipway, uniqueName } from './support.mjs';

const prefix = uniqueName('e2e');
const created = Array.from({ length: 7 }, (_, index) => `${prefix}-${index}`);
let app;

before(async () => {
  for (const name of created) {
    await mlflow('experiments/create', { name, tags: [{ key: 'suite', value: 'e2e' }] });
  }
  app = await startSlipway();
});

after(() => app?.stop());

test('lists experiments created through MLflow and pages through them', async () => {
  const page = await app.open(`/experiments?q=${prefix}&size=5`);
  const firstPage = await cellTexts(page, 'td.name');
  assert.equal(firstPage.length, 5);
  assert.ok(firstPage.every((name) => created.includes(name)), firstPage.join(', '));
  assert.equal(await page.locator('a[rel="prev"]').count(), 0);

  await page.locator('a[rel="next"]').click();
  await page.waitForURL(/[?&]page=/);
  await page.locator('.page-number', { hasText: 'Page 2' }).waitFor();
  const secondPage = await cellTexts(page, 'td.name');
  assert.equal(secondPage.length, 2);
  assert.deepEqual([...firstPage, ...secondPage].sort(), [...created].sort());
  assert.equal(await page.locator('a[rel="next"]').count(), 0);

  await page.locator('a[rel="prev"]').click();
  await page.locator('.page-number', { hasText: 'Page 1' }).waitFor();
  assert.deepEqual(await cellTexts(page, 'td.name'), firstPage);
  await page.close();
});

test('the search form finds experiments by part of their name, in any case', async () => {
  const page = await app.open('/experiments');
  await page.locator('input[name="q"]').fill(prefix.toUpperCase());
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL((url) => url.searchParams.get('q') === prefix.toUpperCase());
  await eventually(async () => {
    assert.deepEqual((await cellTexts(page, 'td.name')).sort(), [...created].sort());
  });
  // The page that answers keeps what was searched for in the box.
  assert.equal(await page.locator('input[name="q"]').inputValue(), prefix.toUpperCase());
  assert.equal(await page.locator('.tag', { hasText: 'suite=e2e' }).count(), created.length);
  await page.close();
});

test('on a 390 px wide phone the top bar wraps instead of running off the screen', async () => {
  const page = await app.open('/experiments');
  await page.setViewportSize({ width: 390, height: 844 });
  const outside = await page.evaluate(() => {
    const bar = document.querySelector('header.topbar');
    const items = [...bar.querySelectorAll('a, button, span')];
    return items
      .filter((item) => item.getBoundingClientRect().right > window.innerWidth + 0.5)
      .map((item) => item.textContent.trim());
  });
  assert.deepEqual(outside, [], 'every link and button of the top bar is on screen');
  await page.close();
});
