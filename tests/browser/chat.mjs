// tests/browser/chat.mjs - the chat app end to end in headless Chromium
// (playwright-core, the system's chromium), run by tests/test_browser_chat.sh.
//
// Starts `streamllm serve` (COOP/COEP: crossOriginIsolated, token ring) over
// a folder holding stories260K.gguf, and a small Node proxy in front of it
// that drops COOP/COEP (not isolated: postMessage) and can slow shards down
// (to see the download bar). On each origin it opens /, picks stories260K,
// loads it, continues "Once upon a time" greedily and compares with
// llama.cpp's reference text, stops a long generation mid-stream (Stop
// button / Escape), asserts that the main thread had no long task over
// 50 ms while generating, and checks the API in the page (chat with a named
// template reuses the KV cache of the previous turn). With
// --enable-unsafe-webgpu the page runs the model on WebGPU (SwiftShader);
// web/example.html (the README's embedding example) prints the reference.
// On the isolated origin it then stops the server and reloads: the app comes
// from the service worker, the model from the browser's cache (OPFS).
// Screenshots go to OUT_DIR (picker, downloading, chatting, stopped, phone,
// webgpu, offline).
//
// Usage: node tests/browser/chat.mjs BIN MODEL_DIR WEB_DIR REF_SUMMARY OUT_DIR
// Prints "N passed, N failed".
import { spawn } from 'node:child_process';
import { readFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [BIN, MODEL_DIR, WEB_DIR, REF_SUMMARY, OUT_DIR] = process.argv.slice(2);
if (!OUT_DIR) {
  console.error('usage: node tests/browser/chat.mjs BIN MODEL_DIR WEB_DIR REF_SUMMARY OUT_DIR');
  process.exit(2);
}
const verbose = !!process.env.TEST_VERBOSE;
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
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

// Long tasks (over 50 ms) on the page's main thread from now on.
async function watchLongTasks(page) {
  await page.evaluate(() => {
    globalThis.__longTasks = [];
    if (globalThis.__ltObserver) globalThis.__ltObserver.disconnect();
    globalThis.__ltObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) globalThis.__longTasks.push(Math.round(e.duration));
    });
    globalThis.__ltObserver.observe({ type: 'longtask' });
  });
}
const longTasks = (page) => page.evaluate(() => globalThis.__longTasks.slice());

// Runs fn (a generation) until one run has no long task, at most `runs`
// times. On a loaded machine the OS can preempt the page's thread mid-task
// (a "long task" that is not ours); a task of ours over 50 ms shows in every
// run. Returns { clean, seen (per run), result (of the last run) }.
async function withoutLongTasks(page, runs, fn) {
  const seen = [];
  let result;
  for (let run = 0; run < runs; run++) {
    await watchLongTasks(page);
    result = await fn();
    const lt = await longTasks(page);
    seen.push(`[${lt.join(', ')}]`);
    if (lt.length === 0) return { clean: true, seen, result };
  }
  return { clean: false, seen, result };
}

async function loadModel(page, id) {
  await page.click(`.model[data-id="${id}"]`);
  await page.click('#load');
  await page.waitForSelector('body[data-engine=ready], body[data-engine=error]', { timeout: 60000 });
  return page.evaluate(() => ({
    state: document.body.dataset.engine,
    error: document.getElementById('load-error').textContent,
    dl: document.getElementById('dl-text').textContent,
    device: document.getElementById('device').textContent,
    backend: document.body.dataset.backend,
  }));
}

// Sends text in the current mode; resolves with the last assistant message
// once it has finished: { text, finish, tokens }.
async function sendAndWait(page, text, { maxTokens, temperature, mode = 'complete' }) {
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
      await page.screenshot({ path: path.join(OUT_DIR, `chat-${label}-downloading.png`) });
      proxy.slow = false;
    }
    const loaded = await loading;
    check(`${label}: model loads`, loaded.state === 'ready', loaded.error);
    check(`${label}: download came from the network`, /ready in .* · 1\.1\d MiB from the network/.test(loaded.dl), loaded.dl);
    check(`${label}: CPU fallback labelled`, loaded.backend === 'cpu' && loaded.device.includes('CPU (WebAssembly), slower'), loaded.device);
    check(`${label}: raw mode for a model without a chat template`, (await page.inputValue('#mode')) === 'complete');
    const cacheList = await page.textContent('#cache');
    check(`${label}: cache manager lists the model`, /llama|stories/.test(cacheList), cacheList);

    // the reference continuation, greedy
    const r = await sendAndWait(page, 'Once upon a time', { maxTokens: 64, temperature: 0 });
    check(`${label}: "Once upon a time" gives the reference continuation`, r.text === ref, `got ${JSON.stringify(r.text)}`);
    check(`${label}: 64 tokens, finish length`, r.tokens === 64 && r.finish === 'length', JSON.stringify(r));
    const stats = await page.textContent('#stats');
    check(`${label}: stats show tokens/s and first-token time`, /tokens\/s/.test(stats) && /first token/.test(stats), stats);
    await page.screenshot({ path: path.join(OUT_DIR, `chat-${label}-chatting.png`) });

    // a long generation, stopped mid-stream
    const s = await stopMidStream(page, proxy ? 'escape' : 'button');
    check(`${label}: stop mid-stream (${proxy ? 'Escape' : 'Stop button'})`, s.finish === 'abort' && s.tokens > 0 && s.tokens < 2000 && s.stopHidden && s.sendVisible, JSON.stringify(s));
    await page.screenshot({ path: path.join(OUT_DIR, `chat-${label}-stopped.png`) });

    // a longer unbroken generation (about a second on the CPU): no long task
    const lt = await withoutLongTasks(page, 3, () => sendAndWait(page, 'Once upon a time', { maxTokens: 1000, temperature: 0.8 }));
    check(`${label}: 1000-token generation, no long task over 50 ms`, lt.result.tokens > 100 && lt.clean, `${lt.result.tokens} tokens, long tasks (ms) per run: ${lt.seen.join(' ')}`);
    if (lt.seen.length > 1) console.error(`note: ${label}: long tasks in earlier runs (machine load?): ${lt.seen.join(' ')}`);

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
    await page.setViewportSize({ width: 1100, height: 760 });

    // chat mode with a named template (stories260K has none): two turns, the
    // second reuses the cache; the model loads again from the browser cache
    await page.goto(`${base}/?chat_template=chatml`);
    await page.waitForSelector('.model[data-id="stories260k"]');
    const again = await loadModel(page, 'stories260k');
    check(`${label}: reload online: the model comes from the browser cache`, again.state === 'ready' && /from the browser cache/.test(again.dl), again.dl);
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
      await offline(page);
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

// The page on WebGPU (Chromium's SwiftShader): the device panel shows the
// adapter, and the greedy text starts as the reference does. Software GPUs
// are slow: 16 tokens.
async function runWebGPU(base, ref) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, '--enable-unsafe-webgpu'],
  });
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  try {
    await page.goto(`${base}/`);
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
    const lt = await withoutLongTasks(page, 2, () => sendAndWait(page, 'Once upon a time', { maxTokens: 16, temperature: 0 }));
    const r = lt.result;
    check('webgpu: greedy text starts as the reference does', r.tokens === 16 && r.text.length > 20 && ref.startsWith(r.text), JSON.stringify(r));
    check('webgpu: no long task over 50 ms while generating', lt.clean, `long tasks (ms) per run: ${lt.seen.join(' ')}`);
    await page.screenshot({ path: path.join(OUT_DIR, 'chat-webgpu.png') });
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

// ---- main ---------------------------------------------------------------------------------

await mkdir(OUT_DIR, { recursive: true });
const tmp = await mkdtemp(path.join(os.tmpdir(), 'sl-chat-'));
let server = null;
let proxy = null;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: CHROMIUM_ARGS,
});
try {
  const ref = await referenceText();
  server = await startServer(path.join(tmp, 'cache'));
  proxy = await startProxy(server.url);

  // not isolated first (the proxy needs the server), then WebGPU, then
  // isolated, which ends by stopping the server
  await runOrigin(browser, proxy.url, { label: 'postmessage', isolated: false, proxy, ref });
  await runExample(browser, server.url, ref);
  if (process.env.SL_CHAT_SKIP_WEBGPU) console.error('SKIP the WebGPU page check (SL_CHAT_SKIP_WEBGPU)');
  else await runWebGPU(server.url, ref);

  await runOrigin(browser, server.url, {
    label: 'isolated', isolated: true, ref,
    offline: async (page) => {
      await stopServer(server.child);
      const down = await fetch(`${server.url}/api/models`).then(() => false, () => true);
      check('offline: the server is down', down);
      await page.reload();
      await page.waitForSelector('.model[data-id="stories260k"]', { timeout: 15000 });
      const net = await page.textContent('#net');
      check('offline: indicator shows offline', /offline/.test(net), net);
      const loaded = await loadModel(page, 'stories260k');
      check('offline: model loads from the browser cache', loaded.state === 'ready' && /from the browser cache/.test(loaded.dl), `${loaded.error} ${loaded.dl}`);
      if (loaded.state === 'ready') {
        const r = await sendAndWait(page, 'Once upon a time', { maxTokens: 64, temperature: 0 });
        check('offline: reference continuation', r.text === ref, JSON.stringify(r.text));
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
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
