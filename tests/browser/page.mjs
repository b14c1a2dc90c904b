// tests/browser/page.mjs - driving the chat page (web/index.html) from
// playwright-core: how Chromium is started, loading a model from the picker,
// sending text and waiting for the answer. Used by tests/browser/chat.mjs and
// by the soak's browser loader (bench/soak-browser.mjs).
import { fileURLToPath } from 'node:url';

// Chromium, started through chromium-foreground.sh (see there why)
export const LAUNCH = {
  executablePath: fileURLToPath(new URL('./chromium-foreground.sh', import.meta.url)),
  env: { ...process.env, CHROMIUM_BIN: process.env.CHROMIUM || '/usr/bin/chromium' },
  headless: true,
};
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

// Picks model `id` in the picker, loads it and waits until it is ready (or
// failed): { state, error, dl, networkBytes, cacheBytes, device, backend }.
export async function loadModel(page, id) {
  await page.click(`.model[data-id="${id}"]`);
  await page.click('#load');
  await page.waitForSelector('body[data-engine=ready], body[data-engine=error]', { timeout: 60000 });
  return page.evaluate(() => ({
    state: document.body.dataset.engine,
    error: document.getElementById('load-error').textContent,
    dl: document.getElementById('dl-text').textContent,
    networkBytes: Number(document.getElementById('download').dataset.networkBytes),
    cacheBytes: Number(document.getElementById('download').dataset.cacheBytes),
    device: document.getElementById('device').textContent,
    backend: document.body.dataset.backend,
  }));
}

// Sends text in the current mode; resolves with the last assistant message
// once it has finished: { text, finish, tokens }.
export async function sendAndWait(page, text, { maxTokens, temperature, mode = 'complete' }) {
  const before = await page.locator('.msg.assistant').count();
  await page.selectOption('#mode', mode);
  await page.fill('#max-tokens', String(maxTokens));
  await page.fill('#temperature', String(temperature));
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
  const last = page.locator('.msg.assistant').nth(before);
  await last.waitFor();
  await page.waitForFunction((n) => {
    const m = document.querySelectorAll('.msg.assistant')[n];
    return m && (m.dataset.finish || m.classList.contains('error')) && document.body.dataset.generating === 'false';
  }, before, { timeout: 60000 });
  return last.evaluate((m) => ({ text: m.querySelector('.out').textContent, finish: m.dataset.finish, tokens: Number(m.dataset.tokens), note: m.querySelector('.note').textContent }));
}
