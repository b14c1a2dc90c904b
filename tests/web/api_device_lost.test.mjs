// api_device_lost.test.mjs - the public API (web/stream-llm.js) when the GPU
// device is lost, on Dawn (npm `webgpu`) with a software Vulkan driver: the
// engine's test hook destroys its device in the middle of a greedy
// stories260K generation. The stream must end with a DeviceLostError (no
// hang: every wait is bounded), the text before it must be a prefix of
// llama.cpp's reference (no wrong tokens), the engine must say so and load
// the model again by itself (onDeviceLost: 'device-lost' then 'recovered'),
// and the next request must give the reference text exactly. A loss between
// requests is recovered unseen; reload() works on demand. Runs with the
// engine in a worker thread (token ring: all of it) and in this thread
// (postMessage: the loss mid-stream and the request after it).
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { requireGpu } from './gpu_env.mjs';
import { TESTDATA, requireTestdata, summaryText } from './refdata.mjs';
import * as api from '../../web/stream-llm.js';

const PROMPT = 'Once upon a time';
const LIMIT_MS = 120000; // SwiftShader: a load is ~2 s, 64 tokens ~3 s; a hang ends here

// Resolves with p, or rejects once `ms` passed (a hang is a failure, not a stuck test).
function within(p, ms, what) {
  let timer;
  const t = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms (hang)`)), ms); });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

// Waits for the n-th notice of `kind`.
function noticeOf(notices, kind, n = 1) {
  return new Promise((resolve) => {
    const poll = () => (notices.filter((x) => x.kind === kind).length >= n ? resolve() : setTimeout(poll, 20));
    poll();
  });
}

const modes = [
  { name: 'worker thread, ring', opts: { worker: true }, transport: 'ring', all: true },
  { name: 'this thread, postMessage', opts: { worker: false }, transport: 'postMessage', all: false },
];

for (const mode of modes) {
  test(`device lost (${mode.name}): typed error mid-stream, recovery, the reference text after`, async (t) => {
    if (!requireTestdata(t) || !(await requireGpu(t))) return;
    const want = summaryText(path.join(TESTDATA, 'ref/stories260K-f32.summary.txt'));
    const model = pathToFileURL(path.join(TESTDATA, 'models/stories260K.gguf')).href;
    const notices = [];
    const reloads = [];
    const engine = await within(api.createEngine({
      model, backend: 'webgpu', cache: false, ...mode.opts,
      onDeviceLost: (n) => notices.push(n),
      onProgress: (p) => { if (p.phase === 'reload') reloads.push(p); },
    }), LIMIT_MS, 'load');
    try {
      assert.equal(engine.backend, 'webgpu');
      assert.equal(engine.transportKind, mode.transport);

      // the device goes after the first piece of text
      const stream = await engine.completions.create({ prompt: PROMPT, max_tokens: 64, temperature: 0, stream: true });
      let text = '';
      let error = null;
      await within((async () => {
        try {
          for await (const c of stream) {
            if (!text) engine._loseDeviceForTesting();
            text += c.choices[0].text;
          }
        } catch (e) {
          error = e;
        }
      })(), LIMIT_MS, 'the stream after the device loss');
      assert.ok(error, `the stream ended without an error after the device loss (text ${JSON.stringify(text)})`);
      assert.ok(error instanceof api.DeviceLostError && error instanceof api.StreamLLMError, `${error.name}: ${error.message}`);
      assert.match(error.message, /device was lost/);
      assert.ok(text.length > 0 && want.startsWith(text), `text before the loss is not a prefix of the reference: ${JSON.stringify(text)}`);
      assert.ok(text.length < want.length, 'the whole text came: the loss was not mid-stream');

      // the engine loads the model again by itself; the next request waits for it
      const r = await within(engine.completions.create({ prompt: PROMPT, max_tokens: 64, temperature: 0 }), LIMIT_MS, 'the request after the loss');
      assert.equal(r.choices[0].text, want);
      assert.equal(r.usage.extra.backend, 'webgpu');
      assert.deepEqual(notices.map((n) => n.kind), ['device-lost', 'recovered']);
      assert.ok(reloads.some((p) => p.step === 'ready'), 'reload progress reached ready');
      assert.equal((await engine.info()).backend, 'webgpu');
      if (!mode.all) return;

      // lost while idle: the next request does not see it
      engine._loseDeviceForTesting();
      const r2 = await within(engine.completions.create({ prompt: PROMPT, max_tokens: 64, temperature: 0 }), LIMIT_MS, 'the request after an idle loss');
      assert.equal(r2.choices[0].text, want);
      await within(noticeOf(notices, 'recovered', 2), LIMIT_MS, 'the second recovery');
      assert.deepEqual(notices.map((n) => n.kind), ['device-lost', 'recovered', 'device-lost', 'recovered']);

      // reload() on demand
      const info = await within(engine.reload(), LIMIT_MS, 'reload()');
      assert.equal(info.backend, 'webgpu');
      const r3 = await within(engine.chat.completions.create({ messages: [{ role: 'user', content: 'x' }], chat_template: 'chatml', max_tokens: 4, temperature: 0 }), LIMIT_MS, 'chat after reload()');
      assert.equal(r3.choices[0].finish_reason, 'length');
    } finally {
      await engine.unload();
    }
  });
}
