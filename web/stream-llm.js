// stream-llm.js - the public ES module: run a GGUF model in the page's own
// browser (WebGPU, or the CPU through WebAssembly) behind an OpenAI-style API.
// Served by `streamllm serve` at /stream-llm.js; types in stream-llm.d.ts.
//
//   import { createEngine } from '/stream-llm.js';
//   const engine = await createEngine({ model: '/api/models/stories260k', onProgress: console.log });
//   const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], stream: true });
//   for await (const chunk of stream) out.textContent += chunk.choices[0]?.delta?.content ?? '';
//
// The engine (engine.wasm + backend + weight manager) runs in a module Worker
// (web/engine/worker.mjs); this thread only sends requests and reads text.
// Text arrives through a SharedArrayBuffer ring when the page is
// crossOriginIsolated, else through postMessage: the same API either way.

/** @typedef {import('./stream-llm').CreateEngineOptions} CreateEngineOptions */

// ---- typed errors -----------------------------------------------------------------

/** Base class of every error this module throws. */
export class StreamLLMError extends Error {
  constructor(message, options = {}) {
    super(message);
    this.name = new.target.name;
    if (options.code) this.code = options.code;
  }
}
/** The GPU device was lost (driver reset, tab in the background too long...). */
export class DeviceLostError extends StreamLLMError {}
/** The model (or its context) does not fit the memory at hand. */
export class OutOfMemoryError extends StreamLLMError {}
/** The browser's storage quota cannot hold the model's cache. */
export class QuotaError extends StreamLLMError {}
/** Fetching the model failed (offline, server down, HTTP error). */
export class NetworkError extends StreamLLMError {}
/** Downloaded bytes do not match the manifest's SHA-256. */
export class IntegrityError extends StreamLLMError {}
/** The model or the device is not supported (architecture, type, no WebGPU...). */
export class UnsupportedError extends StreamLLMError {}
/** A bad request (arguments). */
export class InvalidRequestError extends StreamLLMError {}
/** The prompt does not fit the context window. */
export class ContextLengthError extends InvalidRequestError {}

const ERROR_CLASSES = {
  StreamLLMError, DeviceLostError, OutOfMemoryError, QuotaError, NetworkError, IntegrityError, UnsupportedError,
  InvalidRequestError, ContextLengthError,
};

function toError(e) {
  if (e instanceof StreamLLMError) return e;
  if (e?.name === 'AbortError') return abortError(e.message);
  const Cls = ERROR_CLASSES[e?.name] ?? StreamLLMError;
  return new Cls(e?.message ?? String(e), { code: e?.code });
}

function abortError(message = 'the request was aborted') {
  if (typeof DOMException === 'function') return new DOMException(message, 'AbortError');
  const e = new Error(message);
  e.name = 'AbortError';
  return e;
}

// ---- environment --------------------------------------------------------------------

const isNode = !!globalThis.process?.versions?.node && typeof window === 'undefined';

/**
 * What this browser offers, without loading a model: WebGPU adapter facts,
 * cross-origin isolation (the token ring, later CPU threads), memory hints.
 * @returns {Promise<import('./stream-llm').DeviceInfo>}
 */
export async function detectDevice() {
  const out = {
    webgpu: false,
    reason: null,
    adapter: null,
    features: [],
    limits: {},
    crossOriginIsolated: !!globalThis.crossOriginIsolated,
    sharedArrayBuffer: typeof SharedArrayBuffer === 'function',
    cores: globalThis.navigator?.hardwareConcurrency ?? null,
    deviceMemoryGiB: globalThis.navigator?.deviceMemory ?? null,
    wasmMemoryLimit: 4 * 1024 ** 3,
  };
  const gpu = globalThis.navigator?.gpu;
  if (!gpu) {
    out.reason = 'this browser has no WebGPU (navigator.gpu is missing)';
    return out;
  }
  try {
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) {
      out.reason = 'WebGPU is present but offers no adapter';
      return out;
    }
    const ai = adapter.info ?? {};
    out.webgpu = true;
    out.adapter = { vendor: ai.vendor ?? '', architecture: ai.architecture ?? '', device: ai.device ?? '', description: ai.description ?? '', isFallbackAdapter: !!(ai.isFallbackAdapter ?? adapter.isFallbackAdapter) };
    out.features = [...adapter.features].sort();
    for (const k of ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage'])
      out.limits[k] = adapter.limits[k];
  } catch (e) {
    out.reason = `WebGPU adapter request failed: ${e.message}`;
  }
  return out;
}

// ---- transports: a module Worker, a Node worker thread, or this thread -------------------

// { post(msg), onMessage(fn), onError(fn), close() }
async function openTransport(mode) {
  const url = new URL('./engine/worker.mjs', import.meta.url);
  if (mode === 'thread') {
    const { serveEngine } = await import('./engine/worker.mjs');
    const { port1, port2 } = new MessageChannel();
    serveEngine(port2);
    return {
      post: (m) => port1.postMessage(m),
      onMessage: (fn) => { port1.onmessage = (ev) => fn(ev.data); },
      onError: () => {},
      close: () => { port1.close(); port2.close(); },
    };
  }
  if (typeof Worker === 'function') {
    const w = new Worker(url, { type: 'module', name: 'stream-llm' });
    return {
      post: (m) => w.postMessage(m),
      onMessage: (fn) => { w.onmessage = (ev) => fn(ev.data); },
      onError: (fn) => {
        w.onerror = (ev) => { ev.preventDefault?.(); fn(new StreamLLMError(`the engine's Worker failed: ${ev.message || 'could not load web/engine/worker.mjs'}`)); };
        w.onmessageerror = () => fn(new StreamLLMError('a message from the engine could not be read'));
      },
      close: () => w.terminate(),
    };
  }
  if (isNode) {
    const { Worker: NodeWorker } = await import('node:worker_threads');
    const w = new NodeWorker(url, { workerData: { streamLLMEngine: true } });
    return {
      post: (m) => w.postMessage(m),
      onMessage: (fn) => w.on('message', fn),
      onError: (fn) => w.on('error', (e) => fn(new StreamLLMError(`the engine's worker thread failed: ${e.message}`))),
      close: () => w.terminate(),
    };
  }
  throw new UnsupportedError('no Worker here: use createEngine({ worker: false })');
}

// ---- a queue of text pieces for one generation -----------------------------------------

class PieceQueue {
  constructor() {
    this.items = [];
    this.waiting = null;
    this.done = false;
    this.result = null;
    this.error = null;
  }
  #wake() {
    const w = this.waiting;
    this.waiting = null;
    w?.();
  }
  push(text) {
    if (text) {
      this.items.push(text);
      this.#wake();
    }
  }
  finish(result) {
    this.done = true;
    this.result = result;
    this.#wake();
  }
  fail(error) {
    this.done = true;
    this.error = error;
    this.#wake();
  }
  // The next piece of text, or null at the end (throws the error).
  async next() {
    for (;;) {
      if (this.items.length) return this.items.length === 1 ? this.items.pop() : this.items.splice(0).join('');
      if (this.done) {
        if (this.error) throw this.error;
        return null;
      }
      await new Promise((r) => { this.waiting = r; });
    }
  }
}

// Splits a progress event's bytesDone into networkBytes (fetched by this
// load) and cacheBytes (read from the browser's cache), as documented. The
// weight manager counts bytes it fetched and then read back from its own
// staging (file headers, partial shards) both as fetched and as cached;
// only the bytes this load did not fetch came from the cache.
function sourceSplit(p) {
  if (p.bytesDone == null || p.networkBytes == null) return;
  const fetched = Math.min(p.networkBytes, p.bytesDone);
  p.networkBytes = fetched;
  p.cacheBytes = p.bytesDone - fetched;
}

let idCounter = 0;
function newId(prefix) {
  idCounter++;
  const rnd = Math.floor(Math.random() * 2 ** 32).toString(36);
  return `${prefix}-${Date.now().toString(36)}${rnd}${idCounter}`;
}

// ---- the engine --------------------------------------------------------------------------

/**
 * A loaded model. Create with createEngine().
 */
export class StreamLLMEngine {
  /** @param {any} transport @param {CreateEngineOptions} options */
  constructor(transport, options) {
    this.transport = transport;
    this.options = options;
    this.pending = new Map(); // id -> { resolve, reject, onProgress?, queue? }
    this.nextId = 1;
    this.ring = null;
    this.modelName = options.model;
    this.closed = false;
    this.genChain = Promise.resolve();
    this.current = null; // the generation running now: { id, abort }
    this.loadInfo = null;
    transport.onMessage((m) => this.#onMessage(m));
    transport.onError((e) => this.#failAll(e));
    const chat = { completions: { create: (p) => this.#create('chat', p) } };
    /** OpenAI-style chat completions. */
    this.chat = chat;
    /** OpenAI-style raw text completions. */
    this.completions = { create: (p) => this.#create('completion', p) };
  }

  #failAll(e) {
    for (const p of this.pending.values()) {
      p.queue?.fail(toError(e));
      p.reject(toError(e));
    }
    this.pending.clear();
  }

  #onMessage(m) {
    if (m?.type === 'notice') {
      this.#onNotice(m.notice ?? {});
      return;
    }
    const p = this.pending.get(m?.id);
    if (!p) return;
    switch (m.type) {
      case 'progress':
        p.onProgress?.(m.progress);
        break;
      case 'text':
        // taken: the engine paces itself by these (it waits for a page
        // whose thread is starved instead of competing with it for a core)
        if (m.seq) this.transport.post({ type: 'ack', id: m.id, seq: m.seq });
        p.queue?.push(m.text);
        p.onTokens?.(m.tokens);
        break;
      case 'result':
        this.pending.delete(m.id);
        p.beforeEnd?.();
        p.resolve(m.value);
        break;
      case 'error':
        this.pending.delete(m.id);
        p.beforeEnd?.();
        p.reject(toError(m.error));
        break;
      default:
        break;
    }
  }

  #request(type, body = {}, hooks = {}) {
    if (this.closed) return { id: 0, promise: Promise.reject(new StreamLLMError('the engine was unloaded')) };
    const id = this.nextId++;
    const promise = new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, ...hooks });
    });
    this.transport.post({ type, id, ...body });
    return { id, promise };
  }

  // What the engine tells on its own: the GPU device was lost, the model is
  // loading again (progress), it is back, or it could not be loaded again.
  // Goes to options.onDeviceLost (kind 'device-lost', 'recovered',
  // 'recovery-failed') and to onProgress (phase 'reload': the model again).
  #onNotice(n) {
    const o = this.options;
    if (n.kind === 'reload-progress') {
      const p = { ...(n.progress ?? {}), phase: 'reload', step: n.progress?.phase, text: n.text };
      if (p.bytesTotal) p.progress = Math.min(1, (p.bytesDone ?? 0) / p.bytesTotal);
      sourceSplit(p);
      o.onProgress?.(p);
      return;
    }
    if (n.kind === 'recovered') this.info().then((i) => { this.loadInfo = { ...this.loadInfo, backend: i.backend }; }, () => {});
    o.onDeviceLost?.({ kind: n.kind, text: n.text, error: n.error ? toError(n.error) : undefined });
  }

  /** @internal */
  async load(onProgress) {
    const o = this.options;
    const started = performance.now();
    const progress = (p) => {
      // the fraction and a line of text for people
      const q = { ...p };
      if (q.bytesTotal) q.progress = Math.min(1, (q.bytesDone ?? 0) / q.bytesTotal);
      sourceSplit(q);
      q.elapsed = (performance.now() - started) / 1000;
      onProgress?.(q);
    };
    const { id, promise } = this.#request('load', {
      options: {
        model: o.model, backend: o.backend ?? 'auto', wasmUrl: o.wasmUrl, wasmMtUrl: o.wasmMtUrl,
        wasmRelaxedUrl: o.wasmRelaxedUrl, wasmRelaxedMtUrl: o.wasmRelaxedMtUrl, threads: o.threads, contextLength: o.contextLength,
        chatTemplate: o.chatTemplate, gpu: o.gpu, cache: o.cache, store: o.store, concurrency: o.concurrency, modelId: o.modelId,
      },
    }, { onProgress: progress });
    this.loadId = id;
    const info = await promise;
    this.loadInfo = info;
    return info;
  }

  /** @internal - sets up the token ring (crossOriginIsolated pages, Node). */
  async useRing(bytes) {
    const { TokenRing } = await import('./engine/ring.mjs');
    this.ring = TokenRing.create(bytes);
    this.transport.post({ type: 'ring', buffer: this.ring.sab });
  }

  /** How text travels from the engine: 'ring' (SharedArrayBuffer) or 'postMessage'. */
  get transportKind() { return this.ring ? 'ring' : 'postMessage'; }

  /** The backend in use: 'webgpu' or 'cpu'. */
  get backend() { return this.loadInfo?.backend ?? null; }

  /**
   * Facts about the engine: backend, adapter, features, limits, memory, model.
   * @returns {Promise<import('./stream-llm').EngineInfo>}
   */
  async info() {
    const v = await this.#request('info').promise;
    return { ...v, transport: this.transportKind, worker: this.options.worker !== false };
  }

  /** Forgets the conversation held in the KV cache. */
  async resetChat() { await this.#request('reset').promise; }

  /**
   * Loads the model again, with the options it was loaded with (the weights
   * come from the browser's cache). After a GPU device loss the engine does
   * this by itself; call it when that failed (a DeviceLostError says so).
   * @returns {Promise<import('./stream-llm').EngineInfo>}
   */
  async reload() {
    const info = await this.#request('reload').promise;
    this.loadInfo = info;
    return { ...info, transport: this.transportKind, worker: this.options.worker !== false };
  }

  /** @internal - a test hook: destroys the engine's GPU device, as a driver reset would. */
  _loseDeviceForTesting() { this.transport.post({ type: 'test', action: 'lose-device' }); }

  /** Stops the generation running now, if any (it ends with finish_reason 'abort'). */
  interruptGenerate() { this.current?.abort(); }

  /** Frees the model and stops the Worker. */
  async unload() {
    if (this.closed) return;
    this.current?.abort();
    try {
      await this.#request('unload').promise;
    } catch { /* closing anyway */ }
    this.closed = true;
    this.transport.close();
    this.#failAll(new StreamLLMError('the engine was unloaded'));
  }

  // ---- generation ----

  #create(kind, params) {
    if (this.closed) return Promise.reject(new StreamLLMError('the engine was unloaded'));
    if (!params || typeof params !== 'object') return Promise.reject(new InvalidRequestError('create() needs a parameters object'));
    const { signal } = params;
    if (signal?.aborted) return Promise.reject(abortError());
    const gen = this.#start(kind, params);
    if (params.stream) return Promise.resolve(this.#streamOf(kind, gen));
    return this.#collect(kind, gen);
  }

  // Starts a generation once the previous one is over. Returns { queue (its
  // text, then the Worker's result), tokens, abort(), created, id }.
  #start(kind, params) {
    const queue = new PieceQueue();
    const ctrl = { abort: null, aborted: false };
    const gen = { queue, tokens: 0, created: Math.floor(Date.now() / 1000), id: newId(kind === 'chat' ? 'chatcmpl' : 'cmpl') };
    gen.abort = () => {
      ctrl.aborted = true;
      ctrl.abort?.();
    };
    params.signal?.addEventListener('abort', gen.abort, { once: true });
    const request = {
      kind, messages: params.messages, prompt: params.prompt, max_tokens: params.max_tokens ?? params.max_completion_tokens,
      temperature: params.temperature, top_p: params.top_p, top_k: params.top_k, min_p: params.min_p, seed: params.seed,
      stop: params.stop, frequency_penalty: params.frequency_penalty, presence_penalty: params.presence_penalty,
      repetition_penalty: params.repetition_penalty, chat_template: params.chat_template,
    };
    const run = async () => {
      if (ctrl.aborted) {
        queue.finish({ finish_reason: 'abort', usage: null });
        return;
      }
      const ring = this.ring;
      const decoder = new TextDecoder();
      let finished = false;
      const drain = () => {
        const b = ring.read();
        gen.tokens = ring.tokens();
        if (b) queue.push(decoder.decode(b, { stream: true }));
      };
      const { id, promise } = this.#request('generate', { request: { ...request, ring: !!ring, ack: !ring } }, {
        queue: ring ? null : queue,
        onTokens: (n) => { gen.tokens += n; },
        beforeEnd: () => {
          if (ring) {
            drain();
            queue.push(decoder.decode());
          }
          finished = true;
        },
      });
      ctrl.abort = () => {
        ring?.cancel(id);
        this.transport.post({ type: 'abort', id });
      };
      this.current = gen;
      if (ctrl.aborted) ctrl.abort();
      if (ring) {
        (async () => {
          let seen = ring.signal();
          while (!finished) {
            await ring.changed(seen, 100);
            seen = ring.signal();
            if (!finished) drain();
          }
        })();
      }
      try {
        const value = await promise;
        queue.finish(value);
      } catch (e) {
        queue.fail(e);
      } finally {
        finished = true; // also when the Worker died: the drain loop ends
        if (this.current === gen) this.current = null;
        params.signal?.removeEventListener('abort', gen.abort);
      }
    };
    this.genChain = this.genChain.then(run, run);
    return gen;
  }

  async #collect(kind, gen) {
    let text = '';
    for (let piece; (piece = await gen.queue.next()) !== null;) text += piece;
    const r = gen.queue.result;
    const base = { id: gen.id, created: gen.created, model: this.modelName, system_fingerprint: this.backend ?? undefined };
    if (kind === 'chat') {
      return {
        ...base, object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: r.finish_reason, logprobs: null }],
        usage: r.usage ?? undefined,
      };
    }
    return {
      ...base, object: 'text_completion',
      choices: [{ index: 0, text, finish_reason: r.finish_reason, logprobs: null }],
      usage: r.usage ?? undefined,
    };
  }

  // An async iterable of OpenAI-style chunks; the last one carries
  // finish_reason and usage. controller.abort() (or the request's signal)
  // stops the generation: the stream then ends with finish_reason 'abort'.
  #streamOf(kind, gen) {
    const base = () => ({ id: gen.id, created: gen.created, model: this.modelName, system_fingerprint: this.backend ?? undefined });
    const controller = { abort: () => gen.abort() };
    async function* chunks() {
      let first = true;
      try {
        for (let piece; (piece = await gen.queue.next()) !== null;) {
          if (kind === 'chat') {
            const delta = first ? { role: 'assistant', content: piece } : { content: piece };
            yield { ...base(), object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: null, logprobs: null }] };
          } else {
            yield { ...base(), object: 'text_completion', choices: [{ index: 0, text: piece, finish_reason: null, logprobs: null }] };
          }
          first = false;
        }
      } finally {
        // a consumer that leaves the loop early stops the generation
        if (!gen.queue.done) gen.abort();
      }
      const r = gen.queue.result;
      const usage = r.usage ?? undefined;
      if (kind === 'chat') {
        yield { ...base(), object: 'chat.completion.chunk', choices: [{ index: 0, delta: first ? { role: 'assistant' } : {}, finish_reason: r.finish_reason, logprobs: null }], usage };
      } else {
        yield { ...base(), object: 'text_completion', choices: [{ index: 0, text: '', finish_reason: r.finish_reason, logprobs: null }], usage };
      }
    }
    const it = chunks();
    it.controller = controller;
    it.abort = controller.abort;
    // tokens generated so far (live, for a tokens/s display)
    Object.defineProperty(it, 'tokens', { get: () => gen.tokens });
    return it;
  }
}

/**
 * Loads a model and returns the engine.
 * @param {CreateEngineOptions} options
 * @returns {Promise<StreamLLMEngine>}
 */
export async function createEngine(options = {}) {
  if (!options || typeof options.model !== 'string' || !options.model)
    throw new InvalidRequestError('createEngine: options.model must be a manifest URL (e.g. /api/models/ID) or a .gguf URL');
  const o = { worker: true, backend: 'auto', ...options };
  const base = globalThis.location?.href;
  if (base) o.model = new URL(o.model, base).href;
  if (!o.wasmUrl && !isNode) {
    o.wasmUrl = new URL('./engine/engine.wasm', import.meta.url).href;
    o.wasmMtUrl ??= new URL('./engine/engine-mt.wasm', import.meta.url).href; // CPU threads
    // relaxed-SIMD builds (faster int8 dot products), where the browser has relaxed SIMD
    o.wasmRelaxedUrl ??= new URL('./engine/engine-relaxed.wasm', import.meta.url).href;
    o.wasmRelaxedMtUrl ??= new URL('./engine/engine-relaxed-mt.wasm', import.meta.url).href;
  }
  for (const k of ['wasmUrl', 'wasmMtUrl', 'wasmRelaxedUrl', 'wasmRelaxedMtUrl']) if (o[k] instanceof URL) o[k] = o[k].href;
  const mode = o.worker === false ? 'thread' : 'worker';
  let transport;
  try {
    transport = await openTransport(mode);
  } catch (e) {
    throw toError(e);
  }
  const engine = new StreamLLMEngine(transport, o);
  try {
    // the ring: needs SharedArrayBuffer (crossOriginIsolated pages, Node)
    // and a Worker on the other side (the writer blocks when it is full)
    const ringOk = mode === 'worker' && typeof SharedArrayBuffer === 'function' && (globalThis.crossOriginIsolated || isNode);
    const want = o.transport ?? 'auto';
    if (want === 'ring' && !ringOk) throw new UnsupportedError('transport "ring" needs a Worker and SharedArrayBuffer (a crossOriginIsolated page)');
    if (want !== 'postMessage' && ringOk) await engine.useRing(o.ringBytes);
    // aborting stops a load in progress (its download), later it unloads
    o.signal?.addEventListener('abort', () => {
      if (engine.loadId) engine.transport.post({ type: 'abort', id: engine.loadId });
      engine.unload();
    }, { once: true });
    await engine.load(o.onProgress);
    if (o.signal?.aborted) throw abortError('createEngine was aborted');
  } catch (e) {
    engine.closed = true;
    transport.close();
    throw toError(e);
  }
  return engine;
}

// ---- the model cache ------------------------------------------------------------------------

async function cacheOf(options = {}) {
  const w = await import('./engine/weights.mjs');
  if (typeof w.WeightCache !== 'function' || typeof w.openStore !== 'function') throw new UnsupportedError('the weight cache is not available');
  return new w.WeightCache(await w.openStore(options));
}

/**
 * The models kept in the browser's cache (OPFS).
 * @returns {Promise<import('./stream-llm').CachedModel[]>}
 */
export async function listCachedModels(options) {
  return (await cacheOf(options)).list();
}

/** Deletes a model from the cache. */
export async function deleteCachedModel(id, options) {
  return (await cacheOf(options)).delete(id);
}

/** Bytes the cache uses, and the browser's usage/quota estimate. */
export async function cacheUsage(options) {
  return (await cacheOf(options)).usage();
}
