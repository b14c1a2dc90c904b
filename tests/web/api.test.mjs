// api.test.mjs - the public API (web/stream-llm.js) in Node: createEngine
// over a manifest of `streamllm serve` (and a .gguf file: URL), with the
// engine in a worker thread (token ring) or in this thread (postMessage):
// OpenAI-shaped results and chunks, llama.cpp's reference continuation,
// stop sequences, max_tokens, abort, seeds, the KV cache reused across turns
// (and giving the same text as a fresh start), typed errors, unload.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { TESTDATA, REPO, hasTestdata, requireTestdata, summaryText } from './refdata.mjs';
import * as api from '../../web/stream-llm.js';

const { createEngine } = api;
const BIN = path.resolve(REPO, process.env.STREAMLLM_BIN || 'build/streamllm');
const PROMPT = 'Once upon a time';

// `streamllm serve` over a folder with stories260K; resolves { url, stop() }.
function serve(modelDir, cacheDir) {
  const child = spawn(BIN, ['serve', '--models', modelDir, '--cache', cacheDir, '--port', '0', '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 20000);
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^open (http:\/\/\S+)\/$/m.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({ url: m[1], stop: () => new Promise((r) => { child.once('exit', r); child.kill(); }) });
    });
  });
}

if (!hasTestdata()) {
  test('api: reference data present', (t) => { requireTestdata(t); });
} else {
  const dir = mkdtempSync(path.join(tmpdir(), 'sl-api-'));
  mkdirSync(path.join(dir, 'models'));
  copyFileSync(path.join(TESTDATA, 'models/stories260K.gguf'), path.join(dir, 'models/stories260K.gguf'));
  const want = summaryText(path.join(TESTDATA, 'ref/stories260K-f32.summary.txt'));
  let server;
  const engines = {};
  test.before(async () => {
    server = await serve(path.join(dir, 'models'), path.join(dir, 'cache'));
  });
  test.after(async () => {
    for (const e of Object.values(engines)) await e?.unload();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const manifest = () => `${server.url}/api/models/stories260k`;
  const storeDir = path.join(dir, 'store');

  const modes = [
    { name: 'worker thread, ring', opts: { worker: true }, transport: 'ring' },
    { name: 'worker thread, postMessage', opts: { worker: true, transport: 'postMessage' }, transport: 'postMessage' },
    { name: 'this thread', opts: { worker: false }, transport: 'postMessage' },
  ];
  for (const mode of modes) {
    test(`api (${mode.name}): load, reference text, stream, stop, abort`, async () => {
      const progress = [];
      const engine = await createEngine({ model: manifest(), backend: 'cpu', store: { dir: storeDir }, onProgress: (p) => progress.push(p), ...mode.opts });
      engines[mode.name] = engine;
      assert.equal(engine.transportKind, mode.transport);
      assert.ok(progress.some((p) => p.phase === 'ready'), 'a ready progress event');
      assert.ok(progress.some((p) => p.bytesTotal === 1185792 && p.progress === 1), 'byte progress up to the whole model');

      const info = await engine.info();
      assert.equal(info.backend, 'cpu');
      assert.equal(info.backendLabel, 'CPU (WebAssembly), slower');
      assert.equal(info.model.n_vocab, 512);
      assert.equal(info.transport, mode.transport);
      assert.equal(info.context, 2048);

      // the reference continuation, as one object
      const r = await engine.completions.create({ prompt: PROMPT, max_tokens: 64, temperature: 0 });
      assert.equal(r.object, 'text_completion');
      assert.match(r.id, /^cmpl-/);
      assert.equal(r.choices[0].text, want);
      assert.equal(r.choices[0].finish_reason, 'length');
      assert.equal(r.usage.prompt_tokens, 5);
      assert.equal(r.usage.completion_tokens, 64);
      assert.equal(r.usage.total_tokens, 69);
      assert.equal(r.usage.extra.backend, 'cpu');

      // the same as a stream of chunks
      const s = await engine.completions.create({ prompt: PROMPT, max_tokens: 64, temperature: 0, stream: true });
      let text = '';
      const chunks = [];
      for await (const c of s) {
        chunks.push(c);
        text += c.choices[0].text;
      }
      assert.equal(text, want);
      assert.ok(chunks.length >= 2);
      assert.ok(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null && !c.usage));
      assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');
      assert.equal(chunks.at(-1).usage.completion_tokens, 64);
      // the same prompt again: all but its last token came from the cache
      assert.equal(chunks.at(-1).usage.prompt_tokens_details.cached_tokens, 4);
      assert.equal(s.tokens, 64);

      // stop sequences: within a token and across tokens; not returned
      const st = await engine.completions.create({ prompt: PROMPT, max_tokens: 64, temperature: 0, stop: ['Lily'] });
      assert.equal(st.choices[0].text, want.slice(0, want.indexOf('Lily')));
      assert.equal(st.choices[0].finish_reason, 'stop');
      const st2 = await engine.completions.create({ prompt: PROMPT, max_tokens: 64, temperature: 0, stop: ['ttle gi', 'zzz'], stream: true });
      let t2 = '';
      let last;
      for await (const c of st2) {
        t2 += c.choices[0].text;
        last = c;
      }
      assert.equal(t2, want.slice(0, want.indexOf('ttle gi')));
      assert.equal(last.choices[0].finish_reason, 'stop');

      // max_tokens
      const few = await engine.completions.create({ prompt: PROMPT, max_tokens: 3, temperature: 0 });
      assert.equal(few.usage.completion_tokens, 3);
      assert.ok(want.startsWith(few.choices[0].text));

      // abort mid-stream by the signal: ends with finish_reason 'abort'
      const ctrl = new AbortController();
      const long = await engine.completions.create({ prompt: PROMPT, max_tokens: 2000, temperature: 1, seed: 1, stream: true, signal: ctrl.signal });
      let n = 0;
      let end;
      for await (const c of long) {
        if (++n === 2) ctrl.abort();
        end = c;
      }
      assert.equal(end.choices[0].finish_reason, 'abort');
      assert.ok(end.usage.completion_tokens < 2000, `${end.usage.completion_tokens} tokens after abort`);
      // leaving the loop early stops it too
      const brk = await engine.completions.create({ prompt: PROMPT, max_tokens: 2000, temperature: 1, stream: true });
      for await (const c of brk) if (c) break;
      // and the engine goes on as before
      const again = await engine.completions.create({ prompt: PROMPT, max_tokens: 64, temperature: 0 });
      assert.equal(again.choices[0].text, want);
      // an already aborted signal: AbortError
      await assert.rejects(engine.completions.create({ prompt: PROMPT, signal: AbortSignal.abort() }), { name: 'AbortError' });
    });
  }

  test('api: seeds, chat turns reuse the KV cache and give what a fresh start gives', async () => {
    const engine = engines['worker thread, ring'];
    const a = await engine.completions.create({ prompt: PROMPT, max_tokens: 32, temperature: 1, seed: 42 });
    const b = await engine.completions.create({ prompt: PROMPT, max_tokens: 32, temperature: 1, seed: 42 });
    assert.equal(a.choices[0].text, b.choices[0].text);

    // stories260K has no chat template: chat needs one named
    await assert.rejects(engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }] }), api.UnsupportedError);
    const messages = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Once upon a time' }];
    const p = { max_tokens: 20, temperature: 0, chat_template: 'chatml' };
    const r1 = await engine.chat.completions.create({ messages, ...p });
    assert.equal(r1.object, 'chat.completion');
    assert.match(r1.id, /^chatcmpl-/);
    assert.equal(r1.choices[0].message.role, 'assistant');
    messages.push(r1.choices[0].message, { role: 'user', content: 'What happened next?' });
    const r2 = await engine.chat.completions.create({ messages, ...p });
    assert.ok(r2.usage.prompt_tokens_details.cached_tokens >= r1.usage.prompt_tokens,
      `cached ${r2.usage.prompt_tokens_details.cached_tokens} of ${r2.usage.prompt_tokens}; turn 1 prompt ${r1.usage.prompt_tokens}`);
    assert.equal(r2.usage.extra.prefill_tokens, r2.usage.prompt_tokens - r2.usage.prompt_tokens_details.cached_tokens);
    // from a cleared cache: the same answer
    await engine.resetChat();
    const fresh = await engine.chat.completions.create({ messages, ...p });
    assert.equal(fresh.usage.prompt_tokens_details.cached_tokens, 0);
    assert.equal(fresh.choices[0].message.content, r2.choices[0].message.content);

    // streamed chat chunks: role first, finish and usage last; info()
    // answers while the generation runs
    const s = await engine.chat.completions.create({ messages, ...p, stream: true });
    const during = await engine.info();
    assert.equal(during.loaded, true);
    const chunks = [];
    for await (const c of s) chunks.push(c);
    assert.equal(chunks[0].object, 'chat.completion.chunk');
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    assert.equal(chunks.map((c) => c.choices[0].delta.content ?? '').join(''), r2.choices[0].message.content);
    assert.ok(chunks.at(-1).choices[0].finish_reason);
    assert.equal(chunks.at(-1).usage.completion_tokens, r2.usage.completion_tokens);
  });

  test('api: typed errors', async () => {
    const engine = engines['this thread'];
    await assert.rejects(engine.completions.create({ prompt: 'x '.repeat(3000) }), (e) => e instanceof api.ContextLengthError && e instanceof api.InvalidRequestError && e.code === 'context_length_exceeded');
    await assert.rejects(engine.chat.completions.create({ messages: [] }), api.InvalidRequestError);
    await assert.rejects(engine.chat.completions.create({ messages: [{ role: 'user', content: 'x' }], chat_template: 'no-such' }), api.UnsupportedError);
    await assert.rejects(createEngine({}), api.InvalidRequestError);
    await assert.rejects(createEngine({ model: `${server.url}/api/models/nope`, backend: 'cpu', cache: false }), api.NetworkError);
    await assert.rejects(createEngine({ model: manifest(), backend: 'gpu' }), api.InvalidRequestError);
    // a load aborted by its signal: AbortError
    const ctrl = new AbortController();
    const loading = createEngine({ model: manifest(), backend: 'cpu', cache: false, signal: ctrl.signal,
      onProgress: (p) => { if (p.phase === 'tensors' || p.phase === 'headers') ctrl.abort(); } });
    await assert.rejects(loading, { name: 'AbortError' });
    // unload: later requests are refused
    const e2 = await createEngine({ model: manifest(), backend: 'cpu', store: { dir: storeDir }, worker: false });
    await e2.unload();
    await assert.rejects(e2.completions.create({ prompt: PROMPT }), api.StreamLLMError);
  });

  test('api: a .gguf file URL (Node), no cache', async () => {
    const engine = await createEngine({ model: pathToFileURL(path.join(TESTDATA, 'models/stories260K.gguf')).href, backend: 'cpu', cache: false });
    try {
      const r = await engine.completions.create({ prompt: PROMPT, max_tokens: 64, temperature: 0 });
      assert.equal(r.choices[0].text, want);
    } finally {
      await engine.unload();
    }
  });
}
