// app.js - the chat page (index.html): model picker from /api/models, the
// download bar, the device panel, the streaming chat, the cache manager and
// the offline indicator. It only renders: the engine runs in a Worker behind
// /stream-llm.js. Model text is always put in the page as text nodes (never
// as HTML). The page's state is mirrored in data-* attributes of <body>
// (data-engine, data-generating) for tests and styles.

import { createEngine, detectDevice, listCachedModels, deleteCachedModel, cacheUsage } from './stream-llm.js';
import { renderMarkdown, appendText } from './markdown.js';

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role' || k === 'tabindex') e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children);
  return e;
};

const state = {
  models: [],
  selected: null,   // a model of /api/models
  engine: null,
  loadedId: null,
  device: null,
  info: null,
  history: [],      // chat messages [{ role, content }]
  stream: null,     // the generation running now
  offlineApp: false, // the app came from the service worker's cache
};

// ---- formatting ---------------------------------------------------------------

function fmtBytes(n) {
  if (n == null || !Number.isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n < 10 && i ? n.toFixed(2) : n < 100 && i ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

function fmtSeconds(s) {
  if (s == null || !Number.isFinite(s)) return '?';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function fmtParams(n) {
  if (!n) return '?';
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  return `${(n / 1e3).toFixed(0)}K`;
}

// ---- network / offline indicator ------------------------------------------------------

function updateNet() {
  const b = $('net');
  const offline = !navigator.onLine || state.offlineApp;
  b.textContent = !navigator.onLine ? 'offline' : state.offlineApp ? 'offline: server unreachable, using the cached app' : 'online';
  b.className = `badge ${offline ? 'off' : 'ok'}`;
  document.body.dataset.offline = String(offline);
}
addEventListener('online', updateNet);
addEventListener('offline', updateNet);

function updateIsolation() {
  const iso = !!globalThis.crossOriginIsolated;
  const b = $('iso');
  b.textContent = iso ? 'isolated: token ring' : 'not isolated: postMessage';
  b.className = `badge ${iso ? 'ok' : 'warn'}`;
}

async function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  try {
    await navigator.serviceWorker.register('sw.js');
    await navigator.serviceWorker.ready;
    document.body.dataset.sw = 'ready';
  } catch (e) {
    document.body.dataset.sw = 'failed';
    console.warn('stream-llm: no offline support:', e.message);
  }
}

// ---- device panel ------------------------------------------------------------------------

function renderDevice() {
  const d = state.device;
  const info = state.info;
  const dl = $('device');
  const rows = [];
  const add = (k, v, cls) => rows.push(el('dt', { text: k }), el('dd', { text: v, ...(cls ? { class: cls } : {}) }));
  const backend = info?.backend ?? (d?.webgpu && $('backend').value !== 'cpu' ? 'webgpu' : 'cpu');
  if (backend === 'webgpu' && (info?.adapter || d?.adapter)) {
    const a = info?.adapter ?? d.adapter;
    const features = info?.features?.length ? info.features : d?.features ?? [];
    const limits = info?.limits && Object.keys(info.limits).length ? info.limits : d?.limits ?? {};
    add('runs on', info ? 'GPU (WebGPU)' : 'GPU (WebGPU), when loaded');
    add('adapter', [a.vendor, a.architecture, a.description || a.device].filter(Boolean).join(' · ') || 'unnamed adapter');
    if (a.isFallbackAdapter) add('note', 'software fallback adapter: slow', 'slow');
    add('f16', features.includes('shader-f16') ? 'yes' : 'no');
    add('subgroups', features.includes('subgroups') ? 'yes' : 'no');
    if (limits.maxBufferSize) add('max buffer', fmtBytes(limits.maxBufferSize));
    if (limits.maxStorageBufferBindingSize) add('max binding', fmtBytes(limits.maxStorageBufferBindingSize));
    if (limits.maxComputeWorkgroupStorageSize) add('workgroup mem', fmtBytes(limits.maxComputeWorkgroupStorageSize));
  } else {
    add('runs on', 'CPU (WebAssembly), slower', 'slow');
    const why = info?.fallbackReason ?? d?.reason;
    if (why) add('why', why);
    if (info?.threads) add('threads', info.threads > 1 ? `${info.threads} (Workers sharing the wasm memory)` : '1 (more: createEngine({ threads }) on a cross-origin isolated page)');
  }
  if (d?.cores) add('cores', String(d.cores));
  if (d?.deviceMemoryGiB) add('memory', `≥ ${d.deviceMemoryGiB} GiB (as the browser reports)`);
  add('isolated', d?.crossOriginIsolated ? 'yes (SharedArrayBuffer token ring)' : 'no (postMessage)');
  if (info) {
    add('model', `${info.model.name} · ${info.model.arch} · ${info.model.quant} · ${fmtParams(info.model.params)} params`);
    add('context', `${info.context} tokens`);
    add('weights', fmtBytes(info.memory.weightBytes));
    if (info.memory.gpuPlanBytes) add('GPU plan', fmtBytes(info.memory.gpuPlanBytes));
    add('wasm memory', fmtBytes(info.memory.wasmBytes));
    add('loaded in', fmtSeconds(info.loadSeconds));
  }
  dl.replaceChildren(...rows);
  document.body.dataset.backend = backend;
}

// ---- model picker ----------------------------------------------------------------------------

// Whether a model's memory plan fits this device: [class, text].
function fit(m) {
  const need = m.plan_bytes || m.bytes;
  const d = state.device;
  const wantGpu = $('backend').value !== 'cpu' && d?.webgpu;
  const ram = d?.deviceMemoryGiB ? d.deviceMemoryGiB * 1024 ** 3 : null;
  if (!wantGpu && need > (d?.wasmMemoryLimit ?? 4 * 1024 ** 3)) return ['fit-no', `needs ${fmtBytes(need)}: over WebAssembly's 4 GiB`];
  if (ram && need > ram) return ['fit-no', `needs ${fmtBytes(need)}: more than this device's ~${d.deviceMemoryGiB} GiB`];
  if (wantGpu && d.limits?.maxBufferSize && need > 4 * d.limits.maxBufferSize) return ['fit-maybe', `needs ${fmtBytes(need)}: may not fit the GPU`];
  return ['fit-ok', `needs ${fmtBytes(need)}: fits`];
}

function renderModels() {
  const box = $('models');
  if (!state.models.length) {
    box.replaceChildren(el('p', { class: 'muted', text: 'This server offers no models (streamllm serve --models DIR).' }));
    return;
  }
  const buttons = state.models.map((m, i) => {
    const [cls, text] = fit(m);
    const selected = state.selected?.id === m.id;
    const b = el('button', {
      type: 'button', class: 'model', role: 'radio', 'aria-checked': String(selected),
      tabindex: selected || (!state.selected && i === 0) ? '0' : '-1', 'data-id': m.id,
    },
    el('span', { class: 'name', text: `${m.name} ` }), el('span', { class: 'meta', text: `(${m.id})` }),
    el('span', { class: 'meta', text: ` · ${m.arch} · ${m.quant} · ${fmtParams(m.params)} params` }), el('br'),
    el('span', { class: 'meta', text: `download ${fmtBytes(m.bytes)} · ` }), el('span', { class: `meta ${cls}`, text }),
    state.loadedId === m.id ? el('span', { class: 'meta fit-ok', text: ' · loaded' }) : '');
    b.addEventListener('click', () => selectModel(m));
    b.addEventListener('dblclick', () => loadSelected());
    b.addEventListener('keydown', (ev) => {
      const k = ev.key;
      if (k === 'ArrowDown' || k === 'ArrowUp') {
        ev.preventDefault();
        const next = state.models[(i + (k === 'ArrowDown' ? 1 : state.models.length - 1)) % state.models.length];
        selectModel(next);
        box.querySelector(`[data-id="${CSS.escape(next.id)}"]`)?.focus();
      } else if (k === 'Enter') {
        ev.preventDefault();
        selectModel(m);
        loadSelected();
      }
    });
    return b;
  });
  box.replaceChildren(...buttons);
}

function selectModel(m) {
  state.selected = m;
  $('load').disabled = !!state.stream;
  renderModels();
}

async function loadModels() {
  try {
    const res = await fetch('api/models', { cache: 'no-cache' });
    state.offlineApp = res.headers.get('X-Stream-LLM-Offline') === '1';
    updateNet();
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    state.models = (await res.json()).models ?? [];
    const want = new URLSearchParams(location.search).get('model');
    state.selected = state.models.find((m) => m.id === want) ?? state.selected ?? state.models[0] ?? null;
    $('load').disabled = !state.selected;
    renderModels();
  } catch (e) {
    state.offlineApp = true;
    updateNet();
    $('models').replaceChildren(el('p', { class: 'error', text: `Cannot list the models (${e.message}). Offline? Models stored in this browser still load once the list was seen online.` }));
  }
}

// ---- loading a model ----------------------------------------------------------------------

// Where a load's bytes came from, for the line shown once it is ready.
function sourceText(p) {
  const net = p?.networkBytes ?? 0;
  const cached = p?.cacheBytes ?? 0;
  if (cached && !net) return 'from the browser cache';
  if (net >= (p?.bytesTotal ?? Infinity)) return `${fmtBytes(net)} from the network`;
  if (cached) return `${fmtBytes(cached)} cached, ${fmtBytes(net)} from the network`;
  return net ? `${fmtBytes(net)} from the network` : '';
}

function showProgress(p) {
  if (p.bytesTotal) state.lastProgress = p;
  const bar = $('dl-bar');
  const text = $('dl-text');
  // 'reload': the model loading again after a GPU device loss, in steps
  const phase = p.phase === 'reload' ? p.step : p.phase;
  if (p.phase === 'warning') {
    console.warn('stream-llm:', p.text);
    return;
  }
  if (p.bytesTotal) {
    bar.value = p.progress ?? 0;
    const parts = [`${fmtBytes(p.bytesDone)} / ${fmtBytes(p.bytesTotal)}`];
    if (p.speed) parts.push(`${fmtBytes(p.speed)}/s`);
    if (p.eta != null && phase !== 'done') parts.push(`ETA ${fmtSeconds(p.eta)}`);
    const src = sourceText(p);
    if (src) parts.push(src);
    text.textContent = (p.phase === 'reload' ? 'loading the model again: ' : '') + parts.join(' · ');
    // the numbers behind the words (tests read them)
    $('download').dataset.networkBytes = String(p.networkBytes ?? 0);
    $('download').dataset.cacheBytes = String(p.cacheBytes ?? 0);
    document.body.dataset.download = phase === 'done' ? 'done' : 'active';
  } else if (p.text) {
    text.textContent = (p.phase === 'reload' ? 'GPU device lost, loading the model again: ' : '') + p.text;
  } else if (phase) {
    text.textContent = phase === 'manifest' ? 'reading the manifest…' : phase === 'headers' ? 'reading the model header…' : phase;
  }
  if (phase === 'ready') bar.value = 1;
}

async function loadSelected() {
  const m = state.selected;
  if (!m || state.stream) return;
  $('load').disabled = true;
  $('load-error').hidden = true;
  $('download').hidden = false;
  $('dl-bar').removeAttribute('value');
  $('dl-text').textContent = `loading ${m.name}…`;
  if (!$('log').querySelector('.msg')) $('hint').textContent = `Loading ${m.name}: it is downloaded once and kept in this browser.`;
  state.lastProgress = null;
  document.body.dataset.engine = 'loading';
  setComposer(false);
  if (state.engine) {
    const old = state.engine;
    state.engine = null;
    state.loadedId = null;
    await old.unload();
  }
  try {
    const t0 = performance.now();
    const engine = await createEngine({
      model: m.manifest, backend: $('backend').value, onProgress: showProgress, onDeviceLost: deviceLost,
      transport: params.get('transport') ?? 'auto', // ?transport=postMessage: compare with the ring
      chatTemplate: params.get('chat_template') ?? undefined, // ?chat_template=chatml: for models without one
    });
    state.engine = engine;
    state.loadedId = m.id;
    state.info = await engine.info();
    state.history = [];
    const src = sourceText(state.lastProgress);
    $('dl-text').textContent = `${m.name} ready in ${fmtSeconds((performance.now() - t0) / 1000)} on ${state.info.backendLabel}${src ? ` · ${src}` : ''}`;
    $('dl-bar').value = 1;
    const hasTemplate = !!(state.info.model.chat_template || params.get('chat_template'));
    $('mode').value = hasTemplate ? 'chat' : 'complete';
    $('mode').querySelector('option[value=chat]').disabled = !hasTemplate;
    $('hint').textContent = hasTemplate
      ? `${m.name} is ready. Type a message.`
      : `${m.name} has no chat template: it continues the text you give it.`;
    $('hint').hidden = false;
    document.body.dataset.engine = 'ready';
    // a phone: make room for the chat
    if (matchMedia('(max-width: 720px)').matches) $('device-box').open = $('cache-box').open = false;
    setComposer(true);
    $('prompt').focus();
  } catch (e) {
    document.body.dataset.engine = 'error';
    $('hint').replaceChildren(...pickHint.map((n) => n.cloneNode(true)));
    const box = $('load-error');
    box.textContent = `${e.name}: ${e.message}`;
    box.hidden = false;
  } finally {
    $('load').disabled = !state.selected;
    renderDevice();
    renderModels();
    refreshCache();
  }
}

// The GPU device was lost: the engine loads the model again by itself
// (its progress shows in the download bar); say so, and what came of it.
async function deviceLost(n) {
  $('download').hidden = false;
  $('dl-text').textContent = n.text;
  document.body.dataset.engine = n.kind === 'device-lost' ? 'recovering' : n.kind === 'recovered' ? 'ready' : 'error';
  if (n.kind === 'recovery-failed') {
    const box = $('load-error');
    box.textContent = `${n.text}. Press Load to try again.`;
    box.hidden = false;
  }
  if (n.kind === 'recovered' && state.engine) {
    state.info = await state.engine.info();
    renderDevice();
  }
}

// ---- chat -------------------------------------------------------------------------------

function setComposer(on) {
  $('prompt').disabled = !on;
  $('send').disabled = !on;
  $('new-chat').disabled = !on;
  $('prompt').placeholder = on ? ($('mode').value === 'chat' ? 'Message (Enter sends, Shift+Enter: new line)' : 'Text to continue (Enter sends)') : 'Load a model first';
}

function scrollToEnd() {
  const log = $('log');
  log.scrollTop = log.scrollHeight;
}

// Whether the transcript is scrolled to its end: new text keeps it there;
// someone reading further up is left alone.
function atEnd() {
  const log = $('log');
  return log.scrollHeight - log.scrollTop - log.clientHeight < 48;
}

function addUserMessage(text) {
  const m = el('div', { class: 'msg user' }, el('span', { class: 'role', text: 'you' }));
  const body = el('div', { class: 'out' });
  renderMarkdown(body, text);
  m.append(body);
  $('log').append(m);
}

async function send() {
  const engine = state.engine;
  const text = $('prompt').value;
  if (!engine || state.stream || !text.trim()) return;
  const mode = $('mode').value;
  const maxTokens = Math.max(1, Number($('max-tokens').value) || 256);
  const temperature = Math.max(0, Number($('temperature').value));
  $('prompt').value = '';
  $('hint').hidden = true;

  const msg = el('div', { class: `msg assistant${mode === 'complete' ? ' raw' : ''}` }, el('span', { class: 'role', text: mode === 'complete' ? 'continuation' : state.info?.model?.name ?? 'model' }));
  const out = el('div', { class: 'out cursor' });
  let rawText = null;
  if (mode === 'complete') {
    // the prompt (dimmed) and its continuation, as one text
    rawText = el('span', { class: 'out cursor' });
    msg.append(el('p', {}, el('span', { class: 'prompt', text }), rawText));
  } else {
    addUserMessage(text);
    state.history.push({ role: 'user', content: text });
    msg.append(out);
  }
  const note = el('div', { class: 'note' });
  msg.append(note);
  $('log').append(msg);
  scrollToEnd();

  document.body.dataset.generating = 'true';
  $('send').hidden = true;
  $('stop').hidden = false;
  $('stop').focus({ preventScroll: true });
  $('load').disabled = true;

  const t0 = performance.now();
  let ttft = null;
  let answer = '';
  let shown = 0; // of answer, in raw mode
  let dirty = false;
  let frame = 0;
  // Once per frame at most: what arrived since the last one is appended
  // (the page's only work while the model runs).
  const paint = () => {
    frame = 0;
    if (!dirty) return;
    dirty = false;
    const follow = atEnd(); // read before writing: no extra layout
    if (rawText) {
      appendText(rawText, answer.slice(shown));
      shown = answer.length;
    } else {
      renderMarkdown(out, answer);
    }
    const secs = (performance.now() - t0) / 1000;
    const toks = state.stream?.tokens ?? 0;
    $('stats').textContent = `${plural(toks, 'token')} · ${fmtSeconds(secs)}${ttft !== null ? ` · first token after ${fmtSeconds(ttft / 1000)}` : ''}`;
    if (follow) scrollToEnd();
  };
  let finish = null;
  let usage = null;
  try {
    const params = { stream: true, max_tokens: maxTokens, temperature };
    const stream = mode === 'complete'
      ? await engine.completions.create({ ...params, prompt: text })
      : await engine.chat.completions.create({ ...params, messages: state.history });
    state.stream = stream;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      const piece = (mode === 'complete' ? c?.text : c?.delta?.content) ?? '';
      if (piece) {
        ttft ??= performance.now() - t0;
        answer += piece;
        dirty = true;
        frame ||= requestAnimationFrame(paint);
      }
      if (c?.finish_reason) finish = c.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
  } catch (e) {
    msg.classList.add('error');
    note.textContent = `${e.name}: ${e.message}`;
  } finally {
    if (frame) cancelAnimationFrame(frame);
    dirty = true;
    paint();
    out.classList.remove('cursor');
    rawText?.classList.remove('cursor');
    state.stream = null;
    document.body.dataset.generating = 'false';
    $('send').hidden = false;
    $('stop').hidden = true;
    $('load').disabled = !state.selected;
    $('prompt').focus();
  }
  if (mode === 'chat' && finish) state.history.push({ role: 'assistant', content: answer });
  if (usage) {
    const x = usage.extra ?? {};
    const tps = x.decode_tokens_per_s;
    const stats = [
      plural(usage.completion_tokens, 'token'),
      tps ? `${tps.toFixed(1)} tokens/s` : null,
      ttft !== null ? `first token ${fmtSeconds(ttft / 1000)}` : null,
      x.prefill_tokens_per_s ? `prompt ${usage.prompt_tokens} tokens (${usage.prompt_tokens_details?.cached_tokens ?? 0} cached) at ${x.prefill_tokens_per_s.toFixed(0)}/s` : null,
      finish === 'abort' ? 'stopped' : finish === 'length' ? 'hit max tokens' : null,
      state.info?.backend === 'cpu' ? 'CPU' : 'GPU',
    ].filter(Boolean);
    $('stats').textContent = stats.join(' · ');
    note.textContent = finish === 'abort' ? 'stopped' : '';
    msg.dataset.finish = finish;
    msg.dataset.tokens = String(usage.completion_tokens);
  }
}

function stop() {
  state.stream?.controller.abort();
}

async function newChat() {
  if (state.stream) stop();
  state.history = [];
  $('log').replaceChildren($('hint'));
  $('hint').hidden = false;
  $('stats').textContent = '';
  await state.engine?.resetChat();
}

// ---- cache manager -------------------------------------------------------------------------

async function refreshCache() {
  const list = $('cache');
  try {
    const items = await listCachedModels();
    if (!items.length) {
      list.replaceChildren(el('li', { class: 'muted', text: 'nothing stored yet' }));
    } else {
      list.replaceChildren(...items.map((it) => {
        const del = el('button', { type: 'button', text: 'Delete', 'aria-label': `Delete ${it.name ?? it.id} from this browser` });
        del.addEventListener('click', async () => {
          del.disabled = true;
          try {
            await deleteCachedModel(it.id);
          } catch (e) {
            $('cache-usage').textContent = `cannot delete ${it.name ?? it.id}: ${e.message}`;
            return;
          }
          refreshCache();
        });
        const label = `${it.name ?? it.id} · ${fmtBytes(it.cachedBytes ?? it.bytes)}${it.complete === false ? ' (partial)' : ''}`;
        return el('li', { 'data-id': it.id }, el('span', { text: label }), del);
      }));
    }
    const u = await cacheUsage();
    const est = u?.estimate;
    $('cache-usage').textContent = est?.quota ? `browser storage: ${fmtBytes(est.usage)} used of ${fmtBytes(est.quota)} allowed` : '';
  } catch (e) {
    list.replaceChildren(el('li', { class: 'muted', text: `no cache here (${e.message})` }));
  }
}

// ---- wiring ------------------------------------------------------------------------------------

$('load').addEventListener('click', loadSelected);
$('backend').addEventListener('change', () => {
  renderModels();
  if (!state.info) renderDevice();
});
$('composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  send();
});
$('prompt').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    send();
  }
});
$('mode').addEventListener('change', () => setComposer(!!state.engine));
$('stop').addEventListener('click', stop);
$('new-chat').addEventListener('click', newChat);
addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && state.stream) stop();
});

document.body.dataset.engine = 'none';
document.body.dataset.generating = 'false';
const pickHint = [...$('hint').childNodes].map((n) => n.cloneNode(true)); // "Pick a model and press Load..."

updateNet();
updateIsolation();
const params = new URLSearchParams(location.search);
if (params.get('backend')) $('backend').value = params.get('backend');
// ?test_hooks=1: what tests/browser/chat.mjs needs beyond the page itself
if (params.get('test_hooks')) globalThis.streamLLMTestHooks = { loseDevice: () => state.engine?._loseDeviceForTesting() };
// a phone (or a window made narrow) with a model loaded: the chat gets the room
matchMedia('(max-width: 720px)').addEventListener('change', (ev) => {
  if (ev.matches && state.engine) $('device-box').open = $('cache-box').open = false;
});
state.device = await detectDevice();
renderDevice();
await loadModels();
refreshCache();
registerServiceWorker();
