// tests/browser/chat.mjs - the chat app end to end in headless Chromium
// (playwright-core, the system's chromium), run by tests/test_browser_chat.sh.
//
// Starts `streamllm serve` (COOP/COEP: crossOriginIsolated, token ring) over
// a folder holding stories260K.gguf, and a small Node proxy in front of it
// that drops COOP/COEP (not isolated: postMessage) and can slow shards down
// (to see the download bar). On each origin it opens /, picks stories260K,
// loads it (a first download: every byte from the network, none counted as
// cached), continues "Once upon a time" greedily and compares with
// llama.cpp's reference text, stops a long generation mid-stream (Stop
// button / Escape), and checks the API in the page (chat with a named
// template reuses the KV cache of the previous turn); a reload takes every
// byte from the browser's cache. Every generation is watched: one
// main-thread long task over 50 ms (PerformanceObserver 'longtask') fails
// the test; the longest gap between animation frames is reported.
// With --enable-unsafe-webgpu the page runs the model on WebGPU
// (SwiftShader) in its Worker: the whole reference continuation, exactly;
// then the GPU device is lost mid-stream (a test hook destroys it) and the
// page must show a DeviceLostError, load the model again by itself and give
// the reference again; and the API on the origin without isolation
// (postMessage) gives it too. web/example.html (the README's embedding
// example) prints the reference. On the isolated origin it then stops the
// server and reloads: the app comes from the service worker, the model from
// the browser's cache (OPFS). Screenshots go to OUT_DIR (picker,
// downloading, chatting, stopped, phone, chatmode, webgpu, webgpu-device-lost,
// offline).
//
// Usage: node tests/browser/chat.mjs BIN MODEL_DIR WEB_DIR REF_SUMMARY OUT_DIR
// Prints "N passed, N failed".
import { spawn } from 'node:child_process';
import { readFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { LAUNCH, CHROMIUM_ARGS, loadModel, sendAndWait } from './page.mjs';

const [BIN, MODEL_DIR, WEB_DIR, REF_SUMMARY, OUT_DIR] = process.argv.slice(2);
if (!OUT_DIR) {
  console.error('usage: node tests/browser/chat.mjs BIN MODEL_DIR WEB_DIR REF_SUMMARY OUT_DIR');
  process.exit(2);
}
const verbose = !!process.env.TEST_VERBOSE;
let pass = 0;
let fail = 0;
function check(name, cond, detail = '') {
  if (cond) {
    pass++;
    if (verbose) console.error(`ok   ${name}`);
  } else {
    fail++;
    console.error(`FAIL ${name}${detail ? `: ${detail}` : ''}`);
  }
}

// The reference continuation: the "text:" line of the summary (JSON-style escapes).
async function referenceText() {
  const s = await readFile(REF_SUMMARY, 'utf8');
  const m = /^text: (".*")$/m.exec(s);
  if (!m) throw new Error(`no text: line in ${REF_SUMMARY}`);
  return JSON.parse(m[1]);
}

// ---- the server and the proxy --------------------------------------------------

async function startServer(cacheDir) {
  const child = spawn(BIN, ['serve', '--models', MODEL_DIR, '--cache', cacheDir, '--web', WEB_DIR, '--host', '127.0.0.1', '--port', '0'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`streamllm serve did not start: ${err}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^open (http:\/\/\S+)\/$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`streamllm serve exited (${code}): ${err}`)));
  });
  return { child, url };
}

function stopServer(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 3000).unref();
  });
}

// A proxy to `target` without cross-origin isolation headers; shard bodies
// trickle out at ~`slowBytesPerSec` while proxy.slow is set.
function startProxy(target) {
  const proxy = { slow: false, slowBytesPerSec: 256 * 1024 };
  const drop = new Set(['cross-origin-opener-policy', 'cross-origin-embedder-policy', 'cross-origin-resource-policy']);
  proxy.server = http.createServer((req, res) => {
    const up = http.request(`${target}${req.url}`, { method: req.method, headers: { ...req.headers, host: new URL(target).host } }, (r) => {
      const headers = {};
      for (const [k, v] of Object.entries(r.headers)) if (!drop.has(k)) headers[k] = v;
      res.writeHead(r.statusCode, headers);
      if (!(proxy.slow && req.url.startsWith('/models/'))) {
        r.pipe(res);
        return;
      }
      // slow: forward in small slices with pauses
      r.on('data', (chunk) => {
        r.pause();
        const slices = [];
        for (let i = 0; i < chunk.length; i += 16384) slices.push(chunk.subarray(i, i + 16384));
        const next = () => {
          const s = slices.shift();
          if (!s) return r.resume();
          res.write(s);
          setTimeout(next, (1000 * s.length) / proxy.slowBytesPerSec);
        };
        next();
      });
      r.on('end', () => {
        const wait = () => (r.isPaused() ? setTimeout(wait, 20) : res.end());
        wait();
      });
    });
    up.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  return new Promise((resolve) => proxy.server.listen(0, '127.0.0.1', () => {
    proxy.url = `http://127.0.0.1:${proxy.server.address().port}`;
    resolve(proxy);
  }));
}

// ---- page helpers ------------------------------------------------------------------

// The page's main thread while fn (a generation) runs: every long task
// (over 50 ms, PerformanceObserver 'longtask') and the longest gap between
// two animation frames. Returns { result, longTasks: [ms, ...], frameGap }.
// Every generation of this test is watched, once: one long task fails it.
const mainThread = { generations: 0, longTasks: [], worstFrameGap: 0 };
async function watched(page, fn) {
  await page.evaluate(() => {
    const w = { longTasks: [], frameGap: 0, last: performance.now(), on: true };
    globalThis.__mainThread?.observer.disconnect();
    if (globalThis.__mainThread) globalThis.__mainThread.on = false;
    w.observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.longTasks.push(Math.round(e.duration));
    });
    w.observer.observe({ type: 'longtask' });
    const frame = (t) => {
      if (!w.on) return;
      w.frameGap = Math.max(w.frameGap, t - w.last);
      w.last = t;
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
    globalThis.__mainThread = w;
  });
  const result = await fn();
  // long task entries arrive after their task: give them a frame or two
  await page.waitForTimeout(100);
  const seen = await page.evaluate(() => {
    const w = globalThis.__mainThread;
    w.on = false;
    w.observer.disconnect();
    return { longTasks: w.longTasks, frameGap: Math.round(w.frameGap) };
  });
  mainThread.generations++;
  mainThread.longTasks.push(...seen.longTasks);
  mainThread.worstFrameGap = Math.max(mainThread.worstFrameGap, seen.frameGap);
  return { result, ...seen };
}

function checkNoLongTask(name, w) {
  check(`${name}: no main-thread long task over 50 ms`, w.longTasks.length === 0,
    `long tasks (ms): ${w.longTasks.join(', ')}; longest frame gap ${w.frameGap} ms`);
}

// The model's size as the server lists it (bytes of its shards).
async function modelBytes(base) {
  const list = await (await fetch(`${base}/api/models`)).json();
  return list.models.find((m) => m.id === 'stories260k').bytes;
}

// A load's bytes all came from the network (a first download), or all from
// the browser's cache: the line shown and the numbers behind it agree.
function checkSource(name, loaded, total, from) {
  const want = from === 'network' ? { networkBytes: total, cacheBytes: 0 } : { networkBytes: 0, cacheBytes: total };
  const line = from === 'network' ? /ready in .* · 1\.1\d MiB from the network$/ : /ready in .* · from the browser cache$/;
  check(`${name}: all ${total} bytes from the ${from === 'network' ? 'network' : 'browser cache'}`,
    loaded.networkBytes === want.networkBytes && loaded.cacheBytes === want.cacheBytes && line.test(loaded.dl) && (from !== 'network' || !/cached/.test(loaded.dl)),
    `${loaded.dl} (network ${loaded.networkBytes}, cache ${loaded.cacheBytes})`);
}

// A long generation stopped as soon as text shows: by the Stop button or Escape.
async function stopMidStream(page, how) {
  const before = await page.locator('.msg.assistant').count();
  await page.fill('#max-tokens', '2000');
  await page.fill('#temperature', '1');
  await page.fill('#prompt', 'Once upon a time');
  // in the page: stop at the first text, without a round trip through the test
  const stopped = page.evaluate(({ n, how: h }) => new Promise((resolve) => {
    const poll = () => {
      const m = document.querySelectorAll('.msg.assistant')[n];
      const out = m?.querySelector('.out');
      if (out && out.textContent.length > 0) {
        if (h === 'escape') document.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true }));
        else document.getElementById('stop').click();
        resolve(out.textContent.length);
        return;
      }
      requestAnimationFrame(poll);
    };
    poll();
  }), { n: before, how });
  await page.press('#prompt', 'Enter');
  await stopped;
  await page.waitForFunction((n) => document.querySelectorAll('.msg.assistant')[n]?.dataset.finish && document.body.dataset.generating === 'false', before, { timeout: 30000 });
  return page.locator('.msg.assistant').nth(before).evaluate((m) => ({ finish: m.dataset.finish, tokens: Number(m.dataset.tokens), stopHidden: document.getElementById('stop').hidden, sendVisible: !document.getElementById('send').hidden }));
}

// The public API inside the page: a conversation with a named template
// (stories260K has none) whose second turn reuses the first turn's cache.
async function apiInPage(page, manifest) {
  return page.evaluate(async (m) => {
    const api = await import('/stream-llm.js');
    const engine = await api.createEngine({ model: m, backend: 'cpu', chatTemplate: 'chatml' });
    try {
      const info = await engine.info();
      const messages = [{ role: 'user', content: 'Tell me a story.' }];
      const r1 = await engine.chat.completions.create({ messages, max_tokens: 12, temperature: 0 });
      messages.push(r1.choices[0].message, { role: 'user', content: 'And then?' });
      const chunks = [];
      const s = await engine.chat.completions.create({ messages, max_tokens: 12, temperature: 0, stream: true });
      for await (const c of s) chunks.push(c);
      const last = chunks.at(-1);
      let typed = null;
      try {
        await engine.chat.completions.create({ messages: [{ role: 'user', content: 'x'.repeat(9000) }], max_tokens: 1 });
      } catch (e) {
        typed = { name: e.name, isBase: e instanceof api.StreamLLMError, isCtx: e instanceof api.ContextLengthError };
      }
      return {
        transport: info.transport, backend: info.backend, object1: r1.object, content1: r1.choices[0].message.content,
        finish1: r1.choices[0].finish_reason, usage1: r1.usage, firstDelta: chunks[0]?.choices[0]?.delta,
        lastObject: last.object, lastFinish: last.choices[0].finish_reason, usage2: last.usage, typed,
      };
    } finally {
      await engine.unload();
    }
  }, manifest);
}

// ---- one origin ---------------------------------------------------------------------

async function runOrigin(browser, base, { label, isolated, proxy, ref, offline }) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('dialog', (d) => {
    errors.push(`dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  try {
    await page.goto(`${base}/`);
    await page.waitForSelector('.model[data-id="stories260k"]');
    check(`${label}: crossOriginIsolated is ${isolated}`, (await page.evaluate(() => crossOriginIsolated)) === isolated);
    check(`${label}: picker shows size and memory need`, /download 1\.1\d MiB · needs [\d.]+ MiB: fits/.test(await page.textContent('.model[data-id="stories260k"]')),
      await page.textContent('.model[data-id="stories260k"]'));
    check(`${label}: device panel says CPU (WebAssembly), slower`, (await page.textContent('#device')).includes('CPU (WebAssembly), slower'));
    await page.waitForSelector('body[data-sw=ready]', { timeout: 15000 }).catch(() => {});
    await page.screenshot({ path: path.join(OUT_DIR, `chat-${label}-picker.png`) });

    // load (slowly through the proxy: the download bar shows)
    if (proxy) proxy.slow = true;
    const loading = loadModel(page, 'stories260k');
    if (proxy) {
      await page.waitForFunction(() => document.body.dataset.download === 'active' && document.getElementById('dl-bar').value > 0.05, null, { timeout: 30000 });
      const txt = await page.textContent('#dl-text');
      check(`${label}: download bar shows bytes, speed and ETA`, /[\d.]+ (KiB|MiB) \/ 1\.1\d MiB · .*\/s · ETA/.test(txt), txt);
      const cacheBytes = Number(await page.getAttribute('#download', 'data-cache-bytes'));
      check(`${label}: the first download counts nothing as cached while it runs`, cacheBytes === 0 && !/cache/.test(txt), `${txt} (cache ${cacheBytes})`);
      await page.screenshot({ path: path.join(OUT_DIR, `chat-${label}-downloading.png`) });
      proxy.slow = false;
    }
    const loaded = await loading;
    check(`${label}: model loads`, loaded.state === 'ready', loaded.error);
    const total = await modelBytes(base);
    checkSource(`${label}: first download`, loaded, total, 'network');
    check(`${label}: CPU fallback labelled`, loaded.backend === 'cpu' && loaded.device.includes('CPU (WebAssembly), slower'), loaded.device);
    check(`${label}: device panel says how many CPU threads run`, /threads1 \(more: createEngine/.test(loaded.device), loaded.device);
    check(`${label}: raw mode for a model without a chat template`, (await page.inputValue('#mode')) === 'complete');
    // the list is refreshed after the load settles (not awaited by it)
    await page.waitForFunction(() => /llama|stories/.test(document.getElementById('cache').textContent), null, { timeout: 10000 }).catch(() => {});
    const cacheList = await page.textContent('#cache');
    check(`${label}: cache manager lists the model`, /llama|stories/.test(cacheList), cacheList);

    // the reference continuation, greedy
    const wr = await watched(page, () => sendAndWait(page, 'Once upon a time', { maxTokens: 64, temperature: 0 }));
    const r = wr.result;
    check(`${label}: "Once upon a time" gives the reference continuation`, r.text === ref, `got ${JSON.stringify(r.text)}`);
    checkNoLongTask(`${label}: reference continuation`, wr);
    check(`${label}: 64 tokens, finish length`, r.tokens === 64 && r.finish === 'length', JSON.stringify(r));
    const stats = await page.textContent('#stats');
    check(`${label}: stats show tokens/s and first-token time`, /tokens\/s/.test(stats) && /first token/.test(stats), stats);
    await page.screenshot({ path: path.join(OUT_DIR, `chat-${label}-chatting.png`) });

    // a long generation, stopped mid-stream
    const ws = await watched(page, () => stopMidStream(page, proxy ? 'escape' : 'button'));
    const s = ws.result;
    checkNoLongTask(`${label}: generation stopped mid-stream`, ws);
    check(`${label}: stop mid-stream (${proxy ? 'Escape' : 'Stop button'})`, s.finish === 'abort' && s.tokens > 0 && s.tokens < 2000 && s.stopHidden && s.sendVisible, JSON.stringify(s));
    await page.screenshot({ path: path.join(OUT_DIR, `chat-${label}-stopped.png`) });

    // a longer unbroken generation (about a second on the CPU): no long task
    const wl = await watched(page, () => sendAndWait(page, 'Once upon a time', { maxTokens: 1000, temperature: 0.8 }));
    check(`${label}: 1000-token generation`, wl.result.tokens > 100, JSON.stringify(wl.result).slice(0, 200));
    checkNoLongTask(`${label}: 1000-token generation`, wl);

    // the public API in the page
    const api = await apiInPage(page, '/api/models/stories260k');
    check(`${label}: API transport is ${isolated ? 'ring' : 'postMessage'}`, api.transport === (isolated ? 'ring' : 'postMessage'), api.transport);
    check(`${label}: API chat.completion shape`, api.object1 === 'chat.completion' && typeof api.content1 === 'string' && api.usage1?.completion_tokens > 0, JSON.stringify(api).slice(0, 300));
    check(`${label}: API stream chunks (role first, finish + usage last)`, api.firstDelta?.role === 'assistant' && api.lastObject === 'chat.completion.chunk' && !!api.lastFinish && api.usage2?.total_tokens > 0);
    check(`${label}: second turn reuses the KV cache`, api.usage2?.prompt_tokens_details?.cached_tokens >= api.usage1?.prompt_tokens, JSON.stringify([api.usage1, api.usage2]));
    check(`${label}: typed ContextLengthError`, api.typed?.name === 'ContextLengthError' && api.typed.isBase && api.typed.isCtx, JSON.stringify(api.typed));

    // a phone-sized viewport
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(OUT_DIR, `chat-${label}-phone.png`) });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    check(`${label}: no horizontal overflow on a phone`, !overflow);
    // every control of the composer on the screen, number fields not clipped
    const controls = await page.evaluate(() => ['prompt', 'send', 'mode', 'max-tokens', 'temperature', 'new-chat'].map((id) => {
      const e = document.getElementById(id);
      const r = e.getBoundingClientRect();
      return { id, value: e.value, onScreen: r.left >= 0 && r.right <= innerWidth && r.top >= 0 && r.bottom <= innerHeight, clipped: e.scrollWidth > e.clientWidth };
    }));
    check(`${label}: phone: the composer's controls are on the screen, Max tokens and Temp not clipped`,
      controls.every((c) => c.onScreen && !c.clipped) && controls.find((c) => c.id === 'max-tokens').value.length >= 4, JSON.stringify(controls));
    await page.setViewportSize({ width: 1100, height: 760 });

    // chat mode with a named template (stories260K has none): two turns, the
    // second reuses the cache; the model loads again from the browser cache
    await page.goto(`${base}/?chat_template=chatml`);
    await page.waitForSelector('.model[data-id="stories260k"]');
    const again = await loadModel(page, 'stories260k');
    check(`${label}: reload online: the model loads`, again.state === 'ready', again.error);
    checkSource(`${label}: reload online`, again, total, 'cache');
    check(`${label}: chat mode offered with a template`, (await page.inputValue('#mode')) === 'chat');
    const t1 = await sendAndWait(page, 'Tell me a story about a cat.', { maxTokens: 24, temperature: 0, mode: 'chat' });
    const t2 = await sendAndWait(page, 'What did the cat do next?', { maxTokens: 24, temperature: 0, mode: 'chat' });
    const bubbles = await page.$$eval('.msg.user .out', (els) => els.map((e) => e.textContent));
    const stats2 = await page.textContent('#stats');
    check(`${label}: chat turns shown as bubbles`, bubbles.length === 2 && bubbles[1] === 'What did the cat do next?' && t1.text.length > 0 && t2.text.length > 0, JSON.stringify([bubbles, t1, t2]));
    const cached = /\((\d+) cached\)/.exec(stats2);
    check(`${label}: second chat turn reuses the KV cache`, cached && Number(cached[1]) > 10, stats2);
    await page.screenshot({ path: path.join(OUT_DIR, `chat-${label}-chatmode.png`) });

    if (offline) {
      await offline(page, total);
    } else {
      // cache manager: delete the model
      const items = await page.locator('#cache li button').count();
      check(`${label}: the model is stored once`, items === 1, await page.textContent('#cache'));
      await page.locator('#cache li button').first().click();
      await page.waitForFunction(() => /nothing stored/.test(document.getElementById('cache').textContent), null, { timeout: 15000 }).catch(() => {});
      const left = await page.evaluate(async () => JSON.stringify(await (await import('/stream-llm.js')).listCachedModels()));
      check(`${label}: cache manager deletes`, /nothing stored/.test(await page.textContent('#cache')) && left === '[]', `${await page.textContent('#cache')} ${await page.textContent('#cache-usage')} left: ${left}`);
    }
    check(`${label}: no uncaught page errors`, errors.length === 0, errors.join(' | '));
  } catch (e) {
    check(`${label}: session`, false, e.stack || String(e));
    await page.screenshot({ path: path.join(OUT_DIR, `chat-${label}-failure.png`) }).catch(() => {});
  } finally {
    await context.close();
  }
}

// The page on WebGPU (Chromium's SwiftShader), cross-origin isolated: the
// engine runs in the page's module Worker (web/engine/worker.mjs) and its
// text comes through the token ring. The device panel shows the adapter;
// greedy generation gives llama.cpp's whole reference continuation (64
// tokens), exactly: issue 3's "the same wasm + bridge inside headless
// Chromium". Then the GPU device is lost mid-stream (the engine's test
// hook destroys it): the message ends with a DeviceLostError after a prefix
// of the reference, the engine loads the model again by itself, and the
// next message is the reference again. Last, the public API in a page of
// the origin without isolation (postMessage) gives the reference on WebGPU.
async function runWebGPU(base, plainBase, ref) {
  const browser = await chromium.launch({ ...LAUNCH, args: [...CHROMIUM_ARGS, '--enable-unsafe-webgpu'] });
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(`${base}/?test_hooks=1`);
    await page.waitForSelector('.model[data-id="stories260k"]');
    const hasGpu = await page.evaluate(async () => (await import('/stream-llm.js')).detectDevice().then((d) => d.webgpu));
    if (!hasGpu) {
      const msg = 'no WebGPU adapter in headless Chromium (--enable-unsafe-webgpu): the WebGPU page check is skipped';
      if (process.env.CI === 'true') check('webgpu: adapter present', false, msg);
      else console.error(`SKIP ${msg}`);
      return;
    }
    const loaded = await loadModel(page, 'stories260k');
    check('webgpu: model loads on the GPU', loaded.state === 'ready' && loaded.backend === 'webgpu', `${loaded.error} ${loaded.device}`);
    check('webgpu: device panel shows the adapter, f16 and subgroups', /adapter/.test(loaded.device) && /f16/.test(loaded.device) && /subgroups/.test(loaded.device), loaded.device);
    if (loaded.state !== 'ready') return;
    const workers = page.workers().map((w) => w.url());
    check('webgpu: the engine runs in a module Worker, text through the token ring',
      workers.some((u) => u.endsWith('/engine/worker.mjs')) && (await page.evaluate(() => crossOriginIsolated)) && /token ring/.test(await page.textContent('#iso')),
      `workers: ${workers.join(', ')}`);

    const w = await watched(page, () => sendAndWait(page, 'Once upon a time', { maxTokens: 64, temperature: 0 }));
    check('webgpu: greedy "Once upon a time" gives the whole reference continuation', w.result.text === ref && w.result.tokens === 64 && w.result.finish === 'length', JSON.stringify(w.result));
    checkNoLongTask('webgpu: reference continuation', w);
    await page.screenshot({ path: path.join(OUT_DIR, 'chat-webgpu.png') });

    // the device lost at the first piece of text
    const before = await page.locator('.msg.assistant').count();
    await page.fill('#max-tokens', '64');
    await page.fill('#temperature', '0');
    await page.fill('#prompt', 'Once upon a time');
    const lost = page.evaluate((n) => new Promise((resolve) => {
      const poll = () => {
        const out = document.querySelectorAll('.msg.assistant')[n]?.querySelector('.out');
        if (out && out.textContent.length > 0) {
          globalThis.streamLLMTestHooks.loseDevice();
          resolve();
          return;
        }
        requestAnimationFrame(poll);
      };
      poll();
    }), before);
    await page.press('#prompt', 'Enter');
    await lost;
    await page.waitForFunction((n) => {
      const m = document.querySelectorAll('.msg.assistant')[n];
      return m && (m.dataset.finish || m.classList.contains('error')) && document.body.dataset.generating === 'false';
    }, before, { timeout: 120000 });
    const dl = await page.locator('.msg.assistant').nth(before).evaluate((m) => ({ error: m.classList.contains('error'), note: m.querySelector('.note').textContent, text: m.querySelector('.out').textContent }));
    check('webgpu: device lost mid-stream: the message ends with a DeviceLostError', dl.error && /^DeviceLostError: the GPU device was lost/.test(dl.note), JSON.stringify(dl));
    check('webgpu: device lost mid-stream: the text before it is a prefix of the reference', dl.text.length > 0 && dl.text.length < ref.length && ref.startsWith(dl.text), JSON.stringify(dl.text));
    await page.screenshot({ path: path.join(OUT_DIR, 'chat-webgpu-device-lost.png') });
    // the model loads again (a load, not a generation: SwiftShader compiles
    // its kernels on every core meanwhile), then the next message
    await page.waitForFunction(() => /loaded again/.test(document.getElementById('dl-text').textContent), null, { timeout: 120000 });
    const state = await page.evaluate(() => ({ engine: document.body.dataset.engine, backend: document.body.dataset.backend, dl: document.getElementById('dl-text').textContent }));
    check('webgpu: after the loss the model is back on a new GPU device', state.engine === 'ready' && state.backend === 'webgpu' && /loaded again \(new GPU device\)/.test(state.dl), JSON.stringify(state));
    const again = await watched(page, () => sendAndWait(page, 'Once upon a time', { maxTokens: 64, temperature: 0 }));
    check('webgpu: after the loss, the reference continuation again', again.result.text === ref, JSON.stringify(again.result));
    checkNoLongTask('webgpu: reference continuation after the loss', again);

    // not isolated: the API in the page, text through postMessage
    await page.goto(`${plainBase}/`);
    await page.waitForSelector('.model[data-id="stories260k"]');
    await page.evaluate(async () => {
      const api = await import('/stream-llm.js');
      globalThis.testEngine = await api.createEngine({ model: '/api/models/stories260k', backend: 'webgpu' });
    });
    const wp = await watched(page, () => page.evaluate(async () => {
      const engine = globalThis.testEngine;
      try {
        const r = await engine.completions.create({ prompt: 'Once upon a time', max_tokens: 64, temperature: 0 });
        const info = await engine.info();
        return { text: r.choices[0].text, isolated: crossOriginIsolated, transport: info.transport, worker: info.worker, backend: info.backend };
      } finally {
        await engine.unload();
      }
    }));
    check('webgpu, not isolated: the API in a Worker over postMessage gives the whole reference continuation',
      wp.result.text === ref && !wp.result.isolated && wp.result.transport === 'postMessage' && wp.result.worker && wp.result.backend === 'webgpu', JSON.stringify(wp.result));
    checkNoLongTask('webgpu, not isolated: reference continuation', wp);
    check('webgpu: no uncaught page errors', errors.length === 0, errors.join(' | '));
  } catch (e) {
    check('webgpu: session', false, e.stack || String(e));
    await page.screenshot({ path: path.join(OUT_DIR, 'chat-webgpu-failure.png') }).catch(() => {});
  } finally {
    await browser.close();
  }
}

// The README's example page (web/example.html) prints the reference text.
async function runExample(browser, base, ref) {
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(`${base}/example.html`);
    await page.waitForFunction((want) => document.getElementById('out').textContent === want, `Once upon a time${ref}`, { timeout: 30000 });
    check('example.html: the embedding example prints the reference text', true);
  } catch (e) {
    check('example.html: the embedding example prints the reference text', false, `${await page.textContent('#out').catch(() => '?')} (${e.message.split('\n')[0]})`);
  } finally {
    await context.close();
  }
}

// web/markdown.js in the page: model text never becomes markup, and the
// incremental rendering of a growing message (what the page does once per
// frame while text streams in) always equals rendering the whole text anew,
// over random texts full of markup characters.
async function runMarkdown(browser, base) {
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(`${base}/api/models`); // a page of the origin that starts nothing
    const r = await page.evaluate(async () => {
      const { renderMarkdown } = await import('/markdown.js');
      const box = document.createElement('div');
      renderMarkdown(box, 'a <img src=x onerror="globalThis.pwned=1"> **<b>b</b>** `<i>`\n\n```\n<script>1</script>\n```');
      const safe = !box.querySelector('img, b, i, script') && box.textContent.includes('<img src=x') && !globalThis.pwned;
      let seed = 12345;
      const rand = () => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed / 2147483648;
      };
      const atoms = ['a', 'bc', ' ', '\n', '\n\n', '`', '*', '**', '```', '```js\n', 'x y'];
      let mismatch = null;
      for (let trial = 0; trial < 500 && !mismatch; trial++) {
        const live = document.createElement('div');
        let text = '';
        for (let k = 0; k < 40 && !mismatch; k++) {
          text += atoms[Math.floor(rand() * atoms.length)];
          renderMarkdown(live, text);
          const fresh = document.createElement('div');
          renderMarkdown(fresh, text);
          if (live.innerHTML !== fresh.innerHTML) mismatch = { text, live: live.innerHTML, fresh: fresh.innerHTML };
        }
      }
      return { safe, html: box.innerHTML, mismatch };
    });
    check('markdown: model text never becomes markup', r.safe, r.html);
    check('markdown: rendering a growing message piece by piece equals rendering it whole', !r.mismatch, JSON.stringify(r.mismatch));
  } catch (e) {
    check('markdown: in the page', false, e.stack || String(e));
  } finally {
    await context.close();
  }
}

// ---- main ---------------------------------------------------------------------------------

await mkdir(OUT_DIR, { recursive: true });
const tmp = await mkdtemp(path.join(os.tmpdir(), 'sl-chat-'));
let server = null;
let proxy = null;
const browser = await chromium.launch({ ...LAUNCH, args: CHROMIUM_ARGS });
try {
  const ref = await referenceText();
  server = await startServer(path.join(tmp, 'cache'));
  proxy = await startProxy(server.url);

  // not isolated first (the proxy needs the server), then WebGPU, then
  // isolated, which ends by stopping the server
  await runOrigin(browser, proxy.url, { label: 'postmessage', isolated: false, proxy, ref });
  await runExample(browser, server.url, ref);
  await runMarkdown(browser, server.url);
  if (process.env.SL_CHAT_SKIP_WEBGPU) console.error('SKIP the WebGPU page check (SL_CHAT_SKIP_WEBGPU)');
  else await runWebGPU(server.url, proxy.url, ref);

  await runOrigin(browser, server.url, {
    label: 'isolated', isolated: true, ref,
    offline: async (page, total) => {
      await stopServer(server.child);
      const down = await fetch(`${server.url}/api/models`).then(() => false, () => true);
      check('offline: the server is down', down);
      await page.reload();
      await page.waitForSelector('.model[data-id="stories260k"]', { timeout: 15000 });
      const net = await page.textContent('#net');
      check('offline: indicator shows offline', /offline/.test(net), net);
      const loaded = await loadModel(page, 'stories260k');
      check('offline: model loads', loaded.state === 'ready', loaded.error);
      checkSource('offline: reload', loaded, total, 'cache');
      if (loaded.state === 'ready') {
        const w = await watched(page, () => sendAndWait(page, 'Once upon a time', { maxTokens: 64, temperature: 0 }));
        check('offline: reference continuation', w.result.text === ref, JSON.stringify(w.result.text));
        checkNoLongTask('offline: reference continuation', w);
      }
      await page.screenshot({ path: path.join(OUT_DIR, 'chat-isolated-offline.png') });
    },
  });
} catch (e) {
  check('browser chat test', false, e.stack || String(e));
} finally {
  await browser.close();
  proxy?.server.close();
  if (server) await stopServer(server.child);
  await rm(tmp, { recursive: true, force: true });
}
const worst = mainThread.longTasks.length ? Math.max(...mainThread.longTasks) : 0;
console.error(`main thread over ${mainThread.generations} watched generations: ${mainThread.longTasks.length} long tasks (worst ${worst} ms), longest frame gap ${mainThread.worstFrameGap} ms`);
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
