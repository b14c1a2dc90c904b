// api_flow.test.mjs - how generated text leaves the engine (web/engine/
// worker.mjs's EngineHost, CPU backend, stories260K): in batches of at most
// one per frame (not a message per token), every token counted; and with
// acks (the page's side of postMessage), the engine waits while the page
// leaves a batch untaken (its thread starved), then goes on once it is taken.
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { TESTDATA, requireTestdata } from './refdata.mjs';
import { EngineHost } from '../../web/engine/worker.mjs';

const FLUSH_MS = 16; // as in worker.mjs
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function loadedHost() {
  const messages = [];
  const host = new EngineHost((m) => messages.push(m));
  await host.load(1, { model: pathToFileURL(path.join(TESTDATA, 'models/stories260K.gguf')).href, backend: 'cpu', cache: false });
  return { host, messages };
}

test('flow: text in batches of at most one per frame, every token counted', async (t) => {
  if (!requireTestdata(t)) return;
  const { host, messages } = await loadedHost();
  messages.length = 0;
  const t0 = performance.now();
  const r = await host.generate(2, { kind: 'completion', prompt: 'Once upon a time', max_tokens: 400, temperature: 0.8, seed: 7 });
  const ms = performance.now() - t0;
  const texts = messages.filter((m) => m.type === 'text');
  assert.equal(texts.reduce((n, m) => n + m.tokens, 0), r.usage.completion_tokens);
  assert.ok(r.usage.completion_tokens > 100);
  // the first token goes out at once, then one batch per FLUSH_MS at most, and the last
  assert.ok(texts.length <= Math.ceil(ms / FLUSH_MS) + 2, `${texts.length} messages in ${ms.toFixed(0)} ms`);
  assert.ok(texts.length < r.usage.completion_tokens, 'a message per token');
  host.unload();
});

test('flow: with acks, the engine waits for a page that takes nothing, and goes on once it does', async (t) => {
  if (!requireTestdata(t)) return;
  const { host, messages } = await loadedHost();
  messages.length = 0;
  host.onMessage({ type: 'generate', id: 3, request: { kind: 'completion', prompt: 'Once upon a time', max_tokens: 300, temperature: 0.8, seed: 3, ack: true } });
  // no acks for 300 ms: after the batches of the first MAX_LAG_MS (32 ms) it waits
  await sleep(300);
  const before = messages.filter((m) => m.type === 'text');
  assert.ok(before.length >= 1, 'no text at all');
  assert.ok(before.length <= 4, `${before.length} batches sent to a page that took none`);
  assert.ok(!messages.some((m) => m.type === 'result'), 'finished without the page');
  // the page takes what it got, and then each batch as it comes
  const ackAll = () => {
    const last = messages.filter((m) => m.type === 'text').at(-1);
    if (last) host.onMessage({ type: 'ack', id: 3, seq: last.seq });
  };
  let result;
  for (let i = 0; i < 2000 && !(result = messages.find((m) => m.type === 'result' || m.type === 'error')); i++) {
    ackAll();
    await sleep(5);
  }
  assert.equal(result?.type, 'result', JSON.stringify(result));
  const texts = messages.filter((m) => m.type === 'text');
  assert.equal(texts.reduce((n, m) => n + m.tokens, 0), result.value.usage.completion_tokens);
  assert.deepEqual(texts.map((m) => m.seq), texts.map((_, i) => i + 1));
  host.unload();
});
