// Signing in and out, with and without JavaScript, and what each role sees:
// a viewer gets no launch, promote or rollback, and the server refuses them
// even when the request is made by hand from the viewer's own session.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { password, signIn, startSlipway } from './support.mjs';

let app;

before(async () => {
  app = await startSlipway();
});

after(() => app?.stop());

for (const javaScriptEnabled of [true, false]) {
  test(`sign in and out ${javaScriptEnabled ? 'with' : 'without'} JavaScript`, async () => {
    const context = await app.browser.newContext({ javaScriptEnabled });
    const page = await context.newPage();

    await page.goto(`${app.baseUrl}/experiments?q=abc`);
    assert.equal(new URL(page.url()).pathname, '/login', 'no session: the sign-in page');
    assert.equal(new URL(page.url()).searchParams.get('next'), '/experiments?q=abc');

    await page.fill('#name', 'trainer');
    await page.fill('#password', 'not the password');
    await Promise.all([page.waitForNavigation(), page.click('form.login-form button[type="submit"]')]);
    assert.equal(new URL(page.url()).pathname, '/login');
    assert.equal(await page.locator('[role="alert"]').textContent(), 'Wrong name or password.');
    assert.equal((await context.cookies()).length, 0, 'no cookie for a failed sign-in');

    await page.fill('#name', 'trainer');
    await page.fill('#password', password);
    await Promise.all([page.waitForNavigation(), page.click('form.login-form button[type="submit"]')]);
    const url = new URL(page.url());
    assert.equal(`${url.pathname}${url.search}`, '/experiments?q=abc', 'back to the page asked for');
    assert.equal(await page.locator('.who [data-user]').textContent(), 'trainer');
    const [cookie] = await context.cookies();
    assert.equal(cookie.name, 'slipway_session');
    assert.ok(cookie.httpOnly, 'scripts cannot read the session');
    assert.equal(cookie.sameSite, 'Lax');

    await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign out' }).click()]);
    assert.equal(new URL(page.url()).pathname, '/login');
    assert.equal(await page.locator('[role="alert"]').textContent(), 'You have signed out.');
    await page.goto(`${app.baseUrl}/launches`);
    assert.equal(new URL(page.url()).pathname, '/login', 'the session has ended');

    // The old cookie is worth nothing: the session was deleted on the server.
    const replayed = await fetch(`${app.baseUrl}/launches`, {
      headers: { cookie: `${cookie.name}=${cookie.value}` },
      redirect: 'manual',
    });
    assert.equal(replayed.status, 303);
    await context.close();
  });
}

test('a viewer sees no launch and is refused one made by hand', async () => {
  const page = await app.open('/launch', { as: 'viewer' });
  assert.equal(await page.locator('.who [data-user]').textContent(), 'viewer');
  assert.equal(await page.locator('nav a[href="/launch"]').count(), 0, 'no Launch in the menu');
  assert.equal(await page.locator('form.launch-form').count(), 0, 'no launch form');
  assert.equal(
    await page.locator('[data-not-allowed]').textContent(),
    'Launching needs the trainer role for diabetes; viewer has viewer.',
  );
  const launches = await app.open('/launches', { as: 'viewer' });
  assert.equal(await launches.getByRole('link', { name: 'Launch training' }).count(), 0);

  // The form sent from the viewer's own page, session and all: refused.
  const refused = await page.evaluate(async () => {
    const body = new URLSearchParams({
      submission: crypto.randomUUID(),
      project: 'diabetes',
      entry_point: 'main',
      'param.alpha': '0.5',
      'param.l1_ratio': '0.1',
      new_experiment: 'viewer-was-here',
      profile: 'cpu-small',
    });
    const response = await fetch('/launches', { method: 'POST', body, redirect: 'manual' });
    return { status: response.status, text: await response.text() };
  });
  assert.equal(refused.status, 403);
  assert.equal(refused.text, 'Launching needs the trainer role for diabetes; viewer has viewer.');
  const list = await app.open('/launches', { as: 'viewer' });
  assert.ok(await list.getByText('Nothing launched yet').isVisible(), 'nothing was launched');
});
