// worker.mjs - the engine's side of the public API (web/stream-llm.js): owns
// engine.wasm, the backend (WebGPU or CPU) and the StreamWeightManager, and
// answers requests from the page: load a model, generate (chat or raw
// completion), stop, unload, info. Runs as a dedicated module Worker (the
// page only renders), in a Node worker_threads Worker, or in the calling
// thread (createEngine({ worker: false })), always behind the same messages.
//
// Generated text goes to the page through the SharedArrayBuffer token ring
// (ring.mjs) when the page sent one, else as 'text' messages; either way in
// batches of at most one per frame (the page wakes per batch, not per
// token), and the engine waits when the page leaves a batch untaken for
// long (see MAX_LAG_MS). A conversation keeps its KV cache: each request
// re-evaluates only the tokens after the longest prefix shared with what the
// cache holds.
//
// GPU device lost: the request running then fails with a DeviceLostError,
// and the host loads the model again at once (a new device; the weights
// from the browser's cache), telling the page through 'notice' messages;
// the next request waits for that. A loss between requests is recovered
// the same way, unseen. 'reload' does it on demand.
//
// Messages in:  { type: 'load', id, options } | { type: 'generate', id, request }
//               | { type: 'abort', id } | { type: 'ack', id, seq } | { type: 'ring', buffer }
//               | { type: 'info', id } | { type: 'reset', id } | { type: 'reload', id }
//               | { type: 'unload', id } | { type: 'test', action: 'lose-device' }
// Messages out: { type: 'progress', id, progress } | { type: 'text', id, text, tokens, seq? }
//               | { type: 'notice', notice: { kind, text, error? } }
//               | { type: 'result', id, value } | { type: 'error', id, error: { name, message, code } }

import { Engine, EngineError } from './engine.mjs';
import { TokenRing } from './ring.mjs';
import * as weights from './weights.mjs';

// ---- errors: names the page turns into its typed exceptions ------------------

// An error with the name of one of stream-llm.js's classes.
class HostError extends Error {
  constructor(name, message, code) {
    super(message);
    this.name = name;
    if (code) this.code = code;
  }
}

const ERROR_NAMES = new Set(['DeviceLostError', 'OutOfMemoryError', 'QuotaError', 'NetworkError', 'IntegrityError',
  'UnsupportedError', 'InvalidRequestError', 'ContextLengthError', 'AbortError']);

// Puts an error from any layer (C engine, WebGPU, weight manager) into one
// of the typed classes, by its name or by what its message says.
export function classifyError(e) {
  const message = e?.message ?? String(e);
  let name = e?.name;
  if (name === 'HttpError' || name === 'ManifestError') name = 'NetworkError';
  if (!ERROR_NAMES.has(name)) {
    if (/device (was )?lost/i.test(message)) name = 'DeviceLostError';
    else if (/out of memory|cannot allocate|memory access out of bounds|Array buffer allocation failed|exceeds? the (budget|memory)|too large for/i.test(message)) name = 'OutOfMemoryError';
    else if (/quota/i.test(message)) name = 'QuotaError';
    else if (/sha-?256|integrity|checksum/i.test(message)) name = 'IntegrityError';
    else if (/unsupported|not supported|unknown (architecture|type|chat template)|no chat template|not one we know|not a GGUF|no WebGPU|not available/i.test(message)) name = 'UnsupportedError';
    else if (/Failed to fetch|NetworkError|network|HTTP \d{3}|cannot fetch/i.test(message)) name = 'NetworkError';
    else name = 'StreamLLMError';
  }
  return { name, message, code: e?.code };
}

// ---- small helpers ------------------------------------------------------------

const now = () => performance.now();

// Text leaves the engine at most once per FLUSH_MS (a frame): the page's
// main thread wakes per batch, not per token.
const FLUSH_MS = 16;
// When the page has not taken a batch MAX_LAG_MS after it was sent, its main
// thread is starved for CPU (a busy phone, a loaded machine): the engine
// waits (sleeping, in slices of LAG_WAIT_MS) until it has, so that its core
// goes to the page rather than to more tokens nobody can show yet. At most
// LAG_GIVE_UP_MS per batch: a reader that never answers only slows it down.
const MAX_LAG_MS = 32;
const LAG_WAIT_MS = 10;
const LAG_GIVE_UP_MS = 500;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// "destroyed: the device was destroyed" from a GPUDeviceLostInfo-like object.
function describeLoss(loss) {
  return [loss?.reason, loss?.message].filter(Boolean).join(': ') || 'no reason given';
}

// Lets queued messages (e.g. an abort without the ring) run: a macrotask,
// without setTimeout's 4 ms clamp (setImmediate in Node, a MessageChannel
// ping in browsers).
let yieldChannel = null;
const yieldWaiters = [];
function yieldTask() {
  if (typeof setImmediate === 'function') return new Promise((r) => setImmediate(r));
  if (!yieldChannel) {
    yieldChannel = new MessageChannel();
    yieldChannel.port1.onmessage = () => yieldWaiters.shift()?.();
  }
  return new Promise((r) => {
    yieldWaiters.push(r);
    yieldChannel.port2.postMessage(0);
  });
}

function commonPrefix(a, b) {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

// Holds back text that could be the start of a stop sequence; finds the
// first complete one. push(text) -> { emit, stopped }.
function stopFilter(stops) {
  let pending = '';
  return {
    push(text) {
      pending += text;
      if (!stops.length) {
        const emit = pending;
        pending = '';
        return { emit, stopped: false };
      }
      let at = -1;
      for (const s of stops) {
        const i = pending.indexOf(s);
        if (i >= 0 && (at < 0 || i < at)) at = i;
      }
      if (at >= 0) {
        const emit = pending.slice(0, at);
        pending = '';
        return { emit, stopped: true };
      }
      let hold = 0;
      for (const s of stops) {
        for (let k = Math.min(s.length - 1, pending.length); k > hold; k--) {
          if (pending.endsWith(s.slice(0, k))) {
            hold = k;
            break;
          }
        }
      }
      const emit = pending.slice(0, pending.length - hold);
      pending = pending.slice(pending.length - hold);
      return { emit, stopped: false };
    },
    // What is still held back (no stop sequence completed it).
    rest() {
      const r = pending;
      pending = '';
      return r;
    },
  };
}

// ---- the host ------------------------------------------------------------------

export class EngineHost {
  // post(message): sends to the page.
  constructor(post) {
    this.post = post;
    this.engine = null;
    this.cached = [];         // token ids the KV cache holds, in order
    this.ring = null;
    this.active = new Set();  // request ids queued or running
    this.aborted = new Set(); // of those, the ones stopped by message (no ring)
    this.queue = Promise.resolve();
    this.loadInfo = null;
    this.loadAbort = null;
    this.acks = new Map();    // request id -> the last text batch the page took (postMessage)
    this.ackWaiter = null;    // wakes a generation waiting for an ack
    this.loadOptions = null;  // of the model loaded: to load it again after a device loss
    this.recovering = null;   // the reload after a device loss, while it runs
    this.lost = null;         // { reason, message } of a device loss not recovered from
    this.losses = new WeakMap(); // engine -> { reason, message } once its device is lost
  }

  // One message from the page. Requests run one after another; 'abort',
  // 'ring' and 'info' act at once (info also while generating).
  onMessage(msg) {
    switch (msg?.type) {
      case 'ring':
        this.ring = msg.buffer ? new TokenRing(msg.buffer) : null;
        return;
      case 'info':
        try {
          this.post({ type: 'result', id: msg.id, value: this.info() });
        } catch (e) {
          this.post({ type: 'error', id: msg.id, error: classifyError(e) });
        }
        return;
      case 'abort':
        if (this.active.has(msg.id)) this.aborted.add(msg.id);
        if (this.loadAbort?.id === msg.id) this.loadAbort.ctrl.abort();
        this.#wakeAckWaiter();
        return;
      case 'ack':
        if (this.active.has(msg.id)) this.acks.set(msg.id, msg.seq);
        this.#wakeAckWaiter();
        return;
      case 'test':
        // a test hook: what a driver reset does to the GPU device
        if (msg.action === 'lose-device') this.engine?.factory?.device?.destroy?.();
        return;
      default:
        break;
    }
    const run = async () => {
      try {
        const value = await this.#dispatch(msg);
        this.post({ type: 'result', id: msg.id, value });
      } catch (e) {
        this.post({ type: 'error', id: msg.id, error: classifyError(e) });
      } finally {
        this.active.delete(msg.id);
        this.aborted.delete(msg.id);
        this.acks.delete(msg.id);
      }
    };
    this.active.add(msg.id);
    this.queue = this.queue.then(run, run);
  }

  async #dispatch(msg) {
    // after a device loss, every request waits for the model to be back
    if (this.recovering) await this.recovering;
    switch (msg.type) {
      case 'load': return this.load(msg.id, msg.options ?? {});
      case 'generate': return this.generate(msg.id, msg.request ?? {});
      case 'reset':
        this.#forget();
        return null;
      case 'unload':
        this.unload();
        return null;
      case 'reload': return this.reload();
      default: throw new HostError('InvalidRequestError', `unknown request '${msg.type}'`);
    }
  }

  // ---- loading ----------------------------------------------------------------

  // options: model (manifest or .gguf URL), backend ('auto'|'webgpu'|'cpu'),
  // wasmUrl, contextLength, chatTemplate, gpu (webgpu backend options),
  // cache (false: no persistent store), store (openStore options),
  // concurrency, modelId.
  async load(id, options, progress = (p) => this.post({ type: 'progress', id, progress: p })) {
    if (this.engine) this.unload();
    this.lost = null;
    const { model, backend = 'auto' } = options;
    if (typeof model !== 'string' || !model) throw new HostError('InvalidRequestError', 'createEngine: model must be a manifest or .gguf URL');
    if (!['auto', 'webgpu', 'cpu'].includes(backend)) throw new HostError('InvalidRequestError', `unknown backend '${backend}' (auto, webgpu or cpu)`);
    const ctrl = new AbortController();
    this.loadAbort = { id, ctrl };
    const t0 = now();

    let store = null;
    if (options.cache !== false) {
      try {
        store = await weights.openStore(options.store ?? {});
      } catch (e) {
        progress({ phase: 'warning', text: `no persistent cache: ${e.message}` });
      }
    }
    const wm = new weights.StreamWeightManager({
      url: model, store, concurrency: options.concurrency, modelId: options.modelId,
      onProgress: (p) => progress(p),
    });

    // the backend: WebGPU when asked or available, else the CPU in wasm
    let fallbackReason = null;
    const order = backend === 'cpu' ? ['cpu'] : backend === 'webgpu' ? ['webgpu'] : ['webgpu', 'cpu'];
    if (backend === 'auto' && !globalThis.navigator?.gpu && !options.gpu?.gpu) {
      order.shift();
      fallbackReason = 'no WebGPU in this browser (navigator.gpu is missing)';
    }
    try {
      const info = await this.#loadWith(order, wm, options, { model, progress, ctrl, t0, fallbackReason });
      this.loadOptions = options;
      this.#watchDevice(this.engine);
      return info;
    } finally {
      if (this.loadAbort?.id === id) this.loadAbort = null;
      wm.close?.();
    }
  }

  // Tries the backends in order; the first that loads wins.
  async #loadWith(order, wm, options, { model, progress, ctrl, t0, fallbackReason }) {
    let lastError = null;
    for (const name of order) {
      progress({ phase: 'engine', text: name === 'webgpu' ? 'starting WebGPU' : 'starting the CPU engine (WebAssembly)' });
      let engine = null;
      try {
        // CPU: with options.threads > 1, the threaded build on a pool of
        // Workers where memory can be shared (cross-origin isolated pages,
        // Node); else one thread. Opt-in for now: the pool's barrier
        // self-test still fails now and then under heavy load (issue 8).
        const threads = name === 'cpu' ? Math.max(1, Math.min(8, options.threads ?? 1)) : 1;
        engine = await Engine.create({ wasm: options.wasmUrl, wasmMt: options.wasmMtUrl ?? null,
          wasmRelaxed: options.wasmRelaxedUrl ?? null, wasmRelaxedMt: options.wasmRelaxedMtUrl ?? null,
          backend: name, gpu: options.gpu ?? {}, threads });
        const info = await engine.loadStream(wm, { nCtx: options.contextLength ?? 0, signal: ctrl.signal });
        this.engine = engine;
        this.cached = [];
        this.chatTemplate = options.chatTemplate ?? null;
        this.loadInfo = { model, modelId: options.modelId ?? null, fallbackReason, loadSeconds: (now() - t0) / 1000, info };
        try {
          this.loadInfo.manifest = await wm.manifest();
        } catch {
          this.loadInfo.manifest = null;
        }
        progress({ phase: 'ready', text: 'ready' });
        return this.info();
      } catch (e) {
        engine?.free();
        lastError = e;
        const kind = classifyError(e).name;
        // only the backend can be the problem: try the next one
        if (name === 'webgpu' && order.length > 1 && !['NetworkError', 'IntegrityError', 'QuotaError', 'AbortError'].includes(kind) && !ctrl.signal.aborted) {
          fallbackReason = `the WebGPU backend failed: ${e.message}`;
          continue;
        }
        throw e;
      }
    }
    throw lastError;
  }

  info() {
    const e = this.engine;
    if (!e) return { loaded: false, crossOriginIsolated: !!globalThis.crossOriginIsolated };
    const f = e.factory;
    const adapter = typeof f.adapterInfo === 'function' ? f.adapterInfo() : null;
    const li = this.loadInfo;
    const plan = e.backend?.plan ?? null;
    return {
      loaded: true,
      backend: e.backendName,
      backendLabel: e.backendName === 'webgpu' ? 'WebGPU' : 'CPU (WebAssembly), slower',
      threads: e.threads,
      // the per-device tuning of the decode kernels at load (gpu-tune.mjs)
      gpuTuning: e.gpuTuning ? { source: e.gpuTuning.source, reason: e.gpuTuning.reason ?? null, tuning: e.gpuTuning.tuning, ms: e.gpuTuning.ms } : null,
      fallbackReason: li.fallbackReason,
      crossOriginIsolated: !!globalThis.crossOriginIsolated,
      adapter: adapter && typeof adapter === 'object'
        ? { vendor: adapter.vendor, architecture: adapter.architecture, device: adapter.device, description: adapter.description, isFallbackAdapter: adapter.isFallbackAdapter }
        : null,
      features: adapter?.features ?? [],
      limits: adapter?.limits ?? {},
      model: { ...e.info, url: li.model, id: li.modelId },
      context: e.nCtx(),
      memory: {
        wasmBytes: e.mod.memory.buffer.byteLength,
        weightBytes: e.info.weight_bytes,
        gpuPlanBytes: plan?.total_bytes ?? plan?.bytes ?? null,
        manifestPlan: li.manifest?.plan ?? null,
      },
      plan,
      planSummary: e.backend?.planSummary ?? null,
      loadSeconds: li.loadSeconds,
      cachedTokens: this.cached.length,
    };
  }

  #forget() {
    if (this.engine?.backend) this.engine.truncate(0);
    this.cached = [];
  }

  unload() {
    this.engine?.free();
    this.engine = null;
    this.cached = [];
    this.loadInfo = null;
    this.loadOptions = null;
    this.lost = null;
  }

  // ---- GPU device lost --------------------------------------------------------------

  // When the engine's GPU device is lost (a driver reset, the browser taking
  // the GPU back, a test's destroy()), the model is loaded again at once.
  #watchDevice(engine) {
    const lost = engine?.factory?.device?.lost;
    if (!lost) return;
    lost.then((info) => {
      if (this.engine !== engine) return; // unloaded or replaced: not ours to mend
      const loss = { reason: info?.reason ?? 'unknown', message: info?.message ?? '' };
      this.losses.set(engine, loss);
      this.post({ type: 'notice', notice: { kind: 'device-lost', text: `the GPU device was lost (${describeLoss(loss)}): loading the model again` } });
      this.#recover(engine, loss);
    });
  }

  // Loads the model again with the options it was loaded with (the weights
  // come from the browser's cache), in place of `engine` (unless that was
  // replaced already). Requests wait for it (this.recovering).
  #recover(engine, loss) {
    if (this.recovering) return this.recovering;
    if (this.engine !== engine) return Promise.resolve(); // replaced already
    const options = this.loadOptions;
    const notice = (kind, text, extra = {}) => this.post({ type: 'notice', notice: { kind, text, ...extra } });
    this.recovering = (async () => {
      try {
        this.engine?.free();
      } catch { /* the device is gone: the handles go with it */ }
      this.engine = null;
      this.cached = [];
      try {
        await this.load(0, options, (p) => notice('reload-progress', p.text ?? p.phase ?? '', { progress: p }));
        notice('recovered', `the model was loaded again (${this.engine.backendName === 'webgpu' ? 'new GPU device' : 'on the CPU'})`);
      } catch (e) {
        this.lost = { ...loss, error: e.message };
        this.loadOptions = options; // so that reload() can try again
        notice('recovery-failed', `the GPU device was lost and loading the model again failed: ${e.message}`, { error: classifyError(e) });
      } finally {
        this.recovering = null;
      }
    })();
    return this.recovering;
  }

  // 'reload': the model again, from the options it was loaded with (after a
  // device loss that could not be recovered from, or on the page's wish).
  async reload() {
    if (this.recovering) await this.recovering;
    const options = this.loadOptions;
    if (!options) throw new HostError('InvalidRequestError', 'no model was loaded: nothing to reload');
    this.unload();
    return this.load(0, options, (p) => this.post({ type: 'notice', notice: { kind: 'reload-progress', text: p.text ?? p.phase ?? '', progress: p } }));
  }

  // The error of a request that failed because the device was lost.
  #lostError(loss) {
    return new HostError('DeviceLostError', `the GPU device was lost (${describeLoss(loss)}); the model is being loaded again: send the request again`);
  }

  // Whether an error of the running generation is the device's loss: the
  // loss itself may be reported a moment after the failed read-back.
  async #lossBehind(engine, err) {
    if (classifyError(err).name === 'DeviceLostError') return this.losses.get(engine) ?? { reason: 'unknown', message: err.message };
    const lost = engine.factory?.device?.lost;
    if (!lost) return null;
    await Promise.race([lost, sleep(200)]);
    await null; // the lost handler above runs first
    return this.losses.get(engine) ?? null;
  }

  #wakeAckWaiter() {
    const w = this.ackWaiter;
    this.ackWaiter = null;
    w?.();
  }

  // Waits (sleeping) while the page leaves the oldest text batch of request
  // `id` untaken for more than MAX_LAG_MS. unread: [[marker, sentAt], ...]
  // (marker: a ring position, or a batch number acked by the page).
  async #waitForPage(id, ring, unread, cancelled) {
    const taken = (marker) => (ring ? ring.readPast(marker) : (this.acks.get(id) ?? 0) >= marker);
    while (unread.length && taken(unread[0][0])) unread.shift();
    if (!unread.length || now() - unread[0][1] <= MAX_LAG_MS) return;
    const until = now() + LAG_GIVE_UP_MS;
    while (unread.length && !cancelled() && now() < until) {
      const marker = unread[0][0];
      if (ring) {
        ring.waitReadPast(marker, LAG_WAIT_MS);
      } else {
        await Promise.race([new Promise((r) => { this.ackWaiter = r; }), sleep(LAG_WAIT_MS)]);
        this.ackWaiter = null;
      }
      while (unread.length && taken(unread[0][0])) unread.shift();
    }
  }

  // ---- generation ---------------------------------------------------------------

  // request: kind ('chat'|'completion'), messages | prompt, max_tokens,
  // temperature, top_p, top_k, min_p, seed, stop, frequency_penalty,
  // presence_penalty, repetition_penalty, ring (true: text through the ring).
  async generate(id, req) {
    const e = this.engine;
    if (!e && this.lost) throw new HostError('DeviceLostError', `the GPU device was lost (${describeLoss(this.lost)}) and loading the model again failed (${this.lost.error}): call reload()`);
    if (!e) throw new HostError('InvalidRequestError', 'no model is loaded');
    const t0 = now();
    let text;
    if (req.kind === 'chat') {
      if (!Array.isArray(req.messages) || !req.messages.length) throw new HostError('InvalidRequestError', 'messages must be a non-empty array');
      for (const m of req.messages) {
        if (!m || typeof m.role !== 'string' || typeof m.content !== 'string')
          throw new HostError('InvalidRequestError', 'each message needs a role and a string content');
      }
      text = e.chatRender(req.messages, { template: req.chat_template ?? this.chatTemplate });
    } else {
      if (typeof req.prompt !== 'string') throw new HostError('InvalidRequestError', 'prompt must be a string');
      text = req.prompt;
    }
    const ids = e.tokenize(text, { addSpecial: true, parseSpecial: true });
    if (ids.length === 0) throw new HostError('InvalidRequestError', 'the prompt has no tokens');
    const nCtx = e.nCtx();
    if (ids.length >= nCtx)
      throw new HostError('ContextLengthError', `the prompt has ${ids.length} tokens; the context holds ${nCtx}`, 'context_length_exceeded');
    const room = nCtx - ids.length;
    const maxTokens = req.max_tokens == null ? room : Math.min(room, Math.max(0, Math.floor(req.max_tokens)));
    const stops = req.stop == null ? [] : (Array.isArray(req.stop) ? req.stop : [req.stop]).filter((s) => typeof s === 'string' && s.length);

    // reuse the KV cache for the shared prefix (at least the last prompt
    // token is evaluated again: its logits start the answer)
    let keep = commonPrefix(this.cached, ids);
    if (keep >= ids.length) keep = ids.length - 1;
    if (keep < e.nPast()) e.truncate(keep);
    this.cached.length = keep;

    const sampling = {};
    if (req.temperature != null) sampling.temp = req.temperature;
    if (req.top_p != null) sampling.topP = req.top_p;
    if (req.top_k != null) sampling.topK = req.top_k;
    if (req.min_p != null) sampling.minP = req.min_p;
    if (req.frequency_penalty != null) sampling.frequencyPenalty = req.frequency_penalty;
    if (req.presence_penalty != null) sampling.presencePenalty = req.presence_penalty;
    if (req.repetition_penalty != null) sampling.repeatPenalty = req.repetition_penalty;
    sampling.seed = req.seed != null ? req.seed : Math.floor(Math.random() * 2 ** 32);

    const ring = req.ring ? this.ring : null;
    if (req.ring && !ring) throw new HostError('InvalidRequestError', 'no token ring was given');
    const encoder = new TextEncoder();
    const decoder = new TextDecoder();
    const filter = stopFilter(stops);
    const cancelled = () => this.aborted.has(id) || (ring !== null && ring.cancelled(id));
    // text and token counts wait in outText/pendingTokens for the next batch
    // (see FLUSH_MS); unread: the batches the page has not taken yet, for
    // the wait in #waitForPage (postMessage: only when the page acks)
    let outText = '';
    let pendingTokens = 0;
    let lastFlush = -Infinity;
    let seq = 0;
    const unread = [];
    const flowControl = ring !== null || req.ack === true;
    const flush = async () => {
      if (!outText && !pendingTokens) return;
      if (flowControl) await this.#waitForPage(id, ring, unread, cancelled);
      if (ring) {
        if (outText) {
          ring.addTokens(pendingTokens, false);
          ring.write(encoder.encode(outText), cancelled);
        } else {
          ring.addTokens(pendingTokens);
        }
        unread.push([ring.position(), now()]);
      } else {
        seq++;
        this.post({ type: 'text', id, text: outText, tokens: pendingTokens, ...(req.ack ? { seq } : {}) });
        if (req.ack) unread.push([seq, now()]);
      }
      outText = '';
      pendingTokens = 0;
      lastFlush = now();
    };
    const emit = async (s, final = false) => {
      outText += s;
      if (final || now() - lastFlush >= FLUSH_MS) await flush();
    };

    ring?.begin();
    const smp = e.sampler(sampling);
    const det = e.detokenizer({ continues: true });
    let nGen = 0;
    let finish = 'length';
    let tFirst = null;
    let tPrompt = t0;
    let lastYield = now();
    // greedy without penalties, the whole model on the GPU: the argmax there,
    // a step ahead (Engine.greedySteps), once the first token is chosen here
    const gpuGreedy = e.gpuGreedy(sampling);
    let greedy = null;
    try {
      for (const t of ids) smp.accept(t);
      const suffix = ids.subarray(keep);
      await e.step(suffix);
      for (const t of suffix) this.cached.push(t);
      tPrompt = now();
      for (;;) {
        if (cancelled()) {
          finish = 'abort';
          break;
        }
        if (nGen >= maxTokens) {
          finish = 'length';
          break;
        }
        const tok = greedy ? (await greedy.next()).value : smp.sample();
        if (e.isEog(tok)) {
          finish = 'stop';
          break;
        }
        smp.accept(tok);
        nGen++;
        tFirst ??= now();
        pendingTokens++;
        const r = filter.push(decoder.decode(det.push(tok), { stream: true }));
        await emit(r.emit);
        if (r.stopped) {
          finish = 'stop';
          break;
        }
        if (nGen < maxTokens) {
          if (!gpuGreedy) await e.step([tok]);
          else greedy ??= e.greedySteps(tok, maxTokens - nGen);
          this.cached.push(tok);
        }
        // without the ring an abort arrives as a message: let messages in
        // now and then (with the ring, the abort is a word in it)
        if (now() - lastYield > (ring ? 50 : 10)) {
          await yieldTask();
          lastYield = now();
        }
      }
      if (greedy) {
        // the step in flight is dropped: the cache holds what the context does
        await greedy.return();
        this.cached.length = Math.min(this.cached.length, e.nPast());
      }
      if (finish !== 'stop' || !stops.length) {
        const r = filter.push(decoder.decode(det.flush()));
        await emit(r.emit + (r.stopped ? '' : filter.rest()), true);
      } else {
        await emit('', true);
      }
    } catch (err) {
      // the cache no longer matches what we know: start clean next time
      try {
        await greedy?.return(); // (its read-backs ended)
        e.truncate(0);
      } catch { /* the engine is broken anyway */ }
      this.cached = [];
      // the text generated before stays valid: send it, then the error
      try {
        await flush();
      } catch { /* the page is gone */ }
      const loss = await this.#lossBehind(e, err);
      if (!loss) throw err;
      this.#recover(e, loss);
      // nothing was sent yet (the device went while idle, or during the
      // prompt): the same request again once the model is back, unseen
      if (nGen === 0 && !req.retried && !cancelled()) {
        await this.recovering;
        if (this.engine) return this.generate(id, { ...req, retried: true });
      }
      throw this.#lostError(loss);
    } finally {
      det.free();
      smp.free();
    }
    const tEnd = now();
    const promptSec = (tPrompt - t0) / 1000;
    const decodeSec = tFirst === null ? 0 : (tEnd - tFirst) / 1000;
    return {
      finish_reason: finish,
      usage: {
        prompt_tokens: ids.length,
        completion_tokens: nGen,
        total_tokens: ids.length + nGen,
        prompt_tokens_details: { cached_tokens: keep },
        extra: {
          prefill_tokens: ids.length - keep,
          prefill_tokens_per_s: promptSec > 0 ? (ids.length - keep) / promptSec : null,
          decode_tokens_per_s: decodeSec > 0 && nGen > 1 ? (nGen - 1) / decodeSec : null,
          time_to_first_token_s: tFirst === null ? null : (tFirst - t0) / 1000,
          e2e_latency_s: (tEnd - t0) / 1000,
          backend: e.backendName,
        },
      },
    };
  }
}

// ---- wiring: a Worker, a Node worker thread, or a port in this thread ------------

// Serves requests arriving on port (a MessagePort, a Worker's global scope,
// or Node's parentPort).
export function serveEngine(port) {
  const host = new EngineHost((m) => port.postMessage(m));
  port.addEventListener('message', (ev) => host.onMessage(ev.data));
  port.start?.();
  return host;
}

if (typeof WorkerGlobalScope !== 'undefined' && globalThis instanceof WorkerGlobalScope) {
  serveEngine(globalThis);
} else if (globalThis.process?.versions?.node) {
  const { isMainThread, parentPort, workerData } = await import('node:worker_threads');
  if (!isMainThread && workerData?.streamLLMEngine) serveEngine(parentPort);
}

export { EngineError };
