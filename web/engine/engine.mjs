// engine.mjs - the engine as a JS object: load a GGUF model (header first,
// then the weights), tokenize, evaluate, sample, generate. A thin layer over
// engine.wasm's exports (src/wasm/README.md); every decision is made in C.
// Backends: 'cpu' (the C CPU backend inside wasm, single-threaded for now)
// and 'webgpu' (web/engine/webgpu.mjs, when present). Runs in Node and in
// browsers/Workers; Node-only pieces (files) are imported on demand.

import { loadEngineModule, EngineError, DEFAULT_WASM_URL } from './wasm.mjs';
import { TensorRendezvous } from './rendezvous.mjs';

export { EngineError, DEFAULT_WASM_URL };

// ---- byte sources: where a GGUF file's bytes come from ---------------------
// A source is { name, size, readInto(offset, dest) } where readInto fills the
// Uint8Array dest (possibly a view of wasm memory) with bytes [offset,
// offset + dest.length) and resolves when done; optionally part(k, count)
// gives the source of part k (0-based) of a llama.cpp split.

export function bytesSource(bytes, name = 'model.gguf') {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes.buffer ?? bytes, bytes.byteOffset ?? 0, bytes.byteLength);
  return {
    name,
    size: u8.length,
    async readInto(offset, dest) {
      if (offset + dest.length > u8.length) throw new EngineError(`${name}: read past the end`);
      dest.set(u8.subarray(offset, offset + dest.length));
    },
  };
}

export function blobSource(blob, name = blob.name ?? 'model.gguf') {
  return {
    name,
    size: blob.size,
    async readInto(offset, dest) {
      const buf = await blob.slice(offset, offset + dest.length).arrayBuffer();
      if (buf.byteLength !== dest.length) throw new EngineError(`${name}: short read at ${offset}`);
      dest.set(new Uint8Array(buf));
    },
  };
}

// "NAME-00001-of-00004.gguf" -> "NAME", or null when not a first part.
function splitPrefix(path, count) {
  const m = /^(.*)-00001-of-(\d{5})\.gguf$/.exec(path);
  return m && Number(m[2]) === count ? m[1] : null;
}

// A file (Node). Reads go straight into their destination (no copy).
export async function fileSource(path) {
  const fs = await import('node:fs/promises');
  let fh;
  try {
    fh = await fs.open(path, 'r');
  } catch (e) {
    throw new EngineError(`cannot open ${path}: ${e.code === 'ENOENT' ? 'No such file or directory' : e.message}`);
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw new EngineError(`${path} is not a file${st.isDirectory() ? ' (shard directories are not supported here yet)' : ''}`);
  }
  const { size } = st;
  return {
    name: path,
    size,
    async readInto(offset, dest) {
      const CHUNK = 1 << 26;
      for (let done = 0; done < dest.length;) {
        const n = Math.min(CHUNK, dest.length - done);
        let bytesRead;
        try {
          ({ bytesRead } = await fh.read(dest, done, n, offset + done));
        } catch (e) {
          throw new EngineError(`cannot read ${path}: ${e.message}`);
        }
        if (bytesRead === 0) throw new EngineError(`${path}: unexpected end of file at ${offset + done}`);
        done += bytesRead;
      }
    },
    async part(k, count) {
      const prefix = splitPrefix(path, count);
      if (prefix === null) throw new EngineError(`${path} is the first of ${count} split parts but is not named NAME-00001-of-${String(count).padStart(5, '0')}.gguf`);
      const pad = (x) => String(x).padStart(5, '0');
      return fileSource(`${prefix}-${pad(k + 1)}-of-${pad(count)}.gguf`);
    },
    close: () => fh.close(),
  };
}

async function toSource(model) {
  if (typeof model === 'string') return fileSource(model);
  if (model instanceof ArrayBuffer || ArrayBuffer.isView(model)) return bytesSource(model);
  if (typeof Blob !== 'undefined' && model instanceof Blob) return blobSource(model);
  if (model && typeof model.readInto === 'function') return model;
  throw new EngineError('model: give a path, bytes, a Blob or a source { name, size, readInto }');
}

// ---- backends ------------------------------------------------------------------
// A backend factory: { name, imports?, attach?(mod), adapterInfo?(),
//   async load({ mod, model, sources, name }),
//   async newContext({ mod, model, nCtx, nBatch }) -> backend }.
// load gets every header already given (model: the C model handle), puts the
// weights where the backend wants them and calls model_load; newContext
// makes the evaluation context (KV cache). A backend: { name, nCtx(),
// nPast(), truncate(n), free(), async eval(idsPtr, n, logitsPtr, allLogits) }
// with ids and logits in wasm memory (logits: [n][n_vocab] floats when
// allLogits, else [n_vocab] for the last token).

// The CPU backend: weights in wasm memory, evaluated by the C CPU code.
export function cpuBackend() {
  return {
    name: 'cpu',
    async load({ mod, model, sources, name = null }) {
      const ex = mod.exports;
      mod.status(ex.cpu_weights_alloc(model));
      for (let k = 0; k < sources.length; k++) {
        const dest = mod.handle(ex.cpu_file_dest(model, k));
        // a view of wasm memory: valid while no C call grows it
        await sources[k].readInto(0, new Uint8Array(mod.memory.buffer, dest, sources[k].size));
      }
      const nm = name ? mod.allocString(name) : null;
      try {
        mod.status(ex.model_load(model, nm ? nm.ptr : 0));
      } finally {
        if (nm) mod.free(nm.ptr);
      }
    },
    async newContext({ mod, model, nCtx = 0, nBatch = 0 }) {
      const ex = mod.exports;
      const ctx = mod.handle(ex.cpu_new(model, nCtx, nBatch));
      return {
        name: 'cpu',
        nCtx: () => ex.cpu_n_ctx(ctx),
        nPast: () => ex.cpu_n_past(ctx),
        truncate: (n) => ex.cpu_truncate(ctx, n),
        free: () => ex.cpu_free(ctx),
        async eval(idsPtr, n, logitsPtr, allLogits) {
          mod.status(ex.cpu_eval(ctx, idsPtr, n, logitsPtr, allLogits ? 1 : 0));
        },
      };
    },
  };
}

// The WebGPU backend factory from webgpu.mjs (the GPU half), or an error
// saying why it is not available.
export async function webgpuBackend(options = {}) {
  let m;
  try {
    m = await import('./webgpu.mjs');
  } catch (e) {
    throw new EngineError(`the WebGPU backend is not available (web/engine/webgpu.mjs: ${e.message})`);
  }
  if (typeof m.webgpuBackend !== 'function') throw new EngineError('web/engine/webgpu.mjs does not export webgpuBackend()');
  return m.webgpuBackend(options);
}

// ---- the engine ------------------------------------------------------------------

// Greedy decoding on the GPU keeps this much work queued (Engine.greedySteps).
// Node paused 13-38 ms now and then (garbage collections; the longer ones
// after prefill batches of 512): with 20 ms queued, the GPU idled through
// the longer ones, Llama-3.1-8B on an H200 lost up to 12% of a 128-token run.
const GREEDY_QUEUE_MS = 50;

// Sampling parameters JS -> C names (sampler_param_set).
const SAMPLER_KEYS = {
  temp: 'temp', topK: 'top_k', topP: 'top_p', minP: 'min_p', repeatPenalty: 'repeat_penalty',
  repeatLastN: 'repeat_last_n', frequencyPenalty: 'freq_penalty', presencePenalty: 'presence_penalty',
};

export class Engine {
  // options: wasm (URL/path/bytes/Module of engine.wasm), backend ('cpu',
  // 'webgpu' or a factory object), gpu (options for the WebGPU factory).
  // threads: CPU threads for the 'cpu' backend (caller included; > 1 uses the
  // threaded build on Workers where shared memory works: engine.threads says
  // how many run).
  // wasmRelaxed, wasmRelaxedMt: the relaxed-SIMD builds when `wasm` is not the
  // default (used where the engine runs relaxed SIMD; see wasm.mjs).
  static async create({ wasm = DEFAULT_WASM_URL, wasmMt = null, wasmRelaxed = null, wasmRelaxedMt = null, backend = 'cpu',
    gpu = {}, threads = 1 } = {}) {
    const factory = typeof backend === 'object' ? backend
      : backend === 'cpu' ? cpuBackend()
        : backend === 'webgpu' ? await webgpuBackend(gpu)
          : null;
    if (!factory) throw new EngineError(`unknown backend '${backend}' (cpu or webgpu)`);
    const mod = await loadEngineModule(wasm, { imports: factory.imports ?? {}, threads: factory.name === 'cpu' ? threads : 1,
      mtSource: wasmMt, relaxedSource: wasmRelaxed, relaxedMtSource: wasmRelaxedMt });
    factory.attach?.(mod);
    return new Engine(mod, factory);
  }

  constructor(mod, factory) {
    this.mod = mod;
    this.ex = mod.exports;
    this.factory = factory;
    this.model = 0;
    this.backend = null;
    this.info = null;
    this.idsPtr = 0;
    this.idsCap = 0;
    this.logitsPtr = 0;
    this.logitsCap = 0;
  }

  get backendName() { return this.factory.name; }
  // CPU threads the engine runs on (1 unless created with threads > 1).
  get threads() { return this.mod.threads; }

  // WebGPU: the decode mat-vecs tuned on this device (gpu-tune.mjs), or their
  // tuning from an earlier load; the outcome in this.gpuTuning.
  async #tuneGpu() {
    this.gpuTuning = null;
    if (this.factory.name !== 'webgpu' || !this.backend?.setMatvecTuning) return;
    const { tuneDecode } = await import('./gpu-tune.mjs');
    const o = this.factory.options ?? {};
    this.gpuTuning = await tuneDecode(this, { mode: o.tune ?? 'auto', cache: o.tuneCache ?? null, steps: o.tuneSteps ?? 0 });
  }

  // Loads a model: a path (Node), bytes, a Blob or a source (see above).
  // options: nCtx (<= 0: min(n_ctx_train, 4096), at least minCtx), nBatch,
  // name (for models without general.name; default: the file name).
  async load(model, { nCtx = 0, minCtx = 0, nBatch = 0, name = null } = {}) {
    if (this.model) throw new EngineError('a model is loaded already');
    const { mod, ex } = this;
    const first = await toSource(model);
    const sources = [first];
    this.model = mod.handle(ex.model_new());
    try {
      await this.#giveHeader(first);
      const count = ex.model_n_files(this.model);
      for (let k = 1; k < count; k++) {
        if (!first.part) throw new EngineError(`${first.name} is the first of ${count} split parts; give a source with part()`);
        const src = await first.part(k, count);
        sources.push(src);
        await this.#giveHeader(src);
      }
      await this.factory.load({ mod, model: this.model, sources, name: name ?? baseName(first.name) });
      this.info = JSON.parse(mod.string(mod.handle(ex.model_info(this.model))));
      if (nCtx <= 0) nCtx = Math.max(minCtx, Math.min(this.info.n_ctx_train, 4096));
      this.backend = await this.factory.newContext({ mod, model: this.model, nCtx, nBatch });
      await this.#tuneGpu();
    } catch (e) {
      this.free();
      throw e;
    } finally {
      // an on-demand GPU context reads the files again in every pass and closes them itself
      if (!this.backend?.ownsSources) for (const s of sources) await s.close?.();
    }
    return this.info;
  }

  // Loads a model pushed by a StreamWeightManager (weights.mjs): `wm.load(sink)`
  // gives every file's header, then every tensor's bytes in chunks. On the
  // CPU backend they go straight to their place in wasm memory; a backend
  // that places weights itself (WebGPU) pulls them from byte sources while
  // they arrive (rendezvous.mjs). Options as for load(), plus signal.
  async loadStream(wm, { nCtx = 0, minCtx = 0, nBatch = 0, name = null, signal } = {}) {
    if (this.model) throw new EngineError('a model is loaded already');
    const { mod, ex } = this;
    const context = async () => {
      this.info = JSON.parse(mod.string(mod.handle(ex.model_info(this.model))));
      if (nCtx <= 0) nCtx = Math.max(minCtx, Math.min(this.info.n_ctx_train, 4096));
      this.backend = await this.factory.newContext({ mod, model: this.model, nCtx, nBatch });
      await this.#tuneGpu();
    };
    this.model = mod.handle(ex.model_new());
    const direct = this.factory.name === 'cpu';
    const base = this.weightSink();
    let sink = base;
    let rv = null;
    let started = null; // the backend's load + newContext, pulling from rv
    if (!direct) {
      rv = new TensorRendezvous();
      const sizes = [];
      sink = {
        ...base,
        header: (k, bytes, size) => {
          sizes[k] = size;
          return base.header(k, bytes, size);
        },
        begin: () => {
          const sources = sizes.map((size, k) => rv.source(k, size, `file ${k + 1}`));
          started = (async () => {
            // on-demand layers are read again from the manager (its cache)
            const reread = wm.fileSource ? (k) => wm.fileSource(k) : null;
            await this.factory.load({ mod, model: this.model, sources, name, reread });
            await context();
          })();
          started.then(() => rv.close(), (e) => rv.fail(e));
        },
        tensor: (tname, offset, chunk, t) => rv.push(t.file, t.offset + offset, chunk),
        reset: () => {
          if (started) throw new EngineError('the weights changed after the backend took some: load the model again');
          base.reset();
        },
      };
    }
    try {
      try {
        await wm.load(sink, { signal });
      } catch (e) {
        rv?.fail(e);
        throw e;
      }
      if (direct) {
        const nm = name ? mod.allocString(name) : null;
        try {
          mod.status(ex.model_load(this.model, nm ? nm.ptr : 0));
        } finally {
          if (nm) mod.free(nm.ptr);
        }
        await context();
      } else {
        if (!started) throw new EngineError('the weight manager gave no tensors');
        rv.close();
        await started;
      }
    } catch (e) {
      await started?.catch(() => {}); // the backend lets go of the model first
      this.free();
      throw e;
    }
    return this.info;
  }

  // The sink of the StreamWeightManager contract (weights.mjs) for this
  // engine's model handle: header(k, bytes, size) -> 0 | N, fileCount(),
  // tensorTable(), begin(), tensor(name, offset, chunk), reset(). The model
  // is built (model_load) by the caller once every tensor arrived.
  weightSink() {
    const { mod, ex } = this;
    let index = null; // tensor name -> i, once every header is in
    const table = () => {
      if (index) return index;
      index = new Map();
      const n = mod.status(ex.model_n_tensors(this.model));
      for (let i = 0; i < n; i++) index.set(mod.string(ex.model_tensor_name(this.model, i)), i);
      return index;
    };
    return {
      header: (k, bytes, size) => {
        if (k !== ex.model_n_files_given(this.model)) throw new EngineError(`header of file ${k + 1} given out of order`);
        const ptr = mod.allocBytes(bytes);
        try {
          const r = ex.model_header(this.model, ptr, bytes.length, size);
          if (r < 0 || (r > 0 && r <= bytes.length)) throw mod.error(`file ${k + 1}`);
          return r;
        } finally {
          mod.free(ptr);
        }
      },
      fileCount: () => ex.model_n_files(this.model),
      tensorTable: () => [...table().values()].map((i) => ({
        name: mod.string(ex.model_tensor_name(this.model, i)), file: ex.model_tensor_file(this.model, i),
        offset: ex.model_tensor_offset(this.model, i), bytes: ex.model_tensor_bytes(this.model, i),
      })),
      begin: () => {
        table();
        mod.status(ex.cpu_weights_alloc(this.model));
      },
      tensor: (tname, offset, chunk) => {
        const i = table().get(tname);
        if (i === undefined) throw new EngineError(`the weights name a tensor the model does not have: ${tname}`);
        if (offset < 0 || offset + chunk.length > ex.model_tensor_bytes(this.model, i))
          throw new EngineError(`tensor ${tname}: bytes [${offset}, ${offset + chunk.length}) are outside it`);
        mod.u8().set(chunk, mod.handle(ex.cpu_tensor_dest(this.model, i)) + offset);
      },
      reset: () => {
        ex.model_free(this.model);
        this.model = 0;
        index = null;
        this.model = mod.handle(ex.model_new());
      },
    };
  }

  // Gives a file's header: the first bytes, more when the C side asks.
  async #giveHeader(src) {
    const { mod, ex } = this;
    let want = Math.min(src.size, 1 << 20);
    for (;;) {
      const ptr = mod.alloc(want);
      let r;
      try {
        await src.readInto(0, new Uint8Array(mod.memory.buffer, ptr, want));
        r = ex.model_header(this.model, ptr, want, src.size);
      } finally {
        mod.free(ptr);
      }
      if (r === 0) return;
      if (r < 0 || r <= want) throw mod.error(src.name);
      want = r;
    }
  }

  free() {
    this.backend?.free();
    this.backend = null;
    if (this.model) this.ex.model_free(this.model);
    this.model = 0;
    if (this.idsPtr) this.mod.free(this.idsPtr);
    if (this.logitsPtr) this.mod.free(this.logitsPtr);
    this.idsPtr = this.logitsPtr = this.idsCap = this.logitsCap = 0;
  }

  get nVocab() { return this.info.n_vocab; }
  nCtx() { return this.backend.nCtx(); }
  nPast() { return this.backend.nPast(); }
  // Forgets the context from position n on (0: start over).
  truncate(n = 0) { this.backend.truncate(n); }

  // Text -> Int32Array of ids. addSpecial: BOS/EOS as the model wants;
  // parseSpecial: control tokens written in the text are matched.
  tokenize(text, { addSpecial = true, parseSpecial = true } = {}) {
    const { mod, ex } = this;
    const s = mod.allocString(text);
    try {
      const flags = (addSpecial ? 1 : 0) | (parseSpecial ? 2 : 0);
      let cap = s.len + 8;
      for (;;) {
        const out = mod.alloc(cap * 4);
        try {
          const n = mod.status(ex.tokenize(this.model, s.ptr, s.len, flags, out, cap));
          if (n <= cap) return mod.i32(out, n).slice();
          cap = n;
        } finally {
          mod.free(out);
        }
      }
    } finally {
      mod.free(s.ptr);
    }
  }

  isEog(id) { return this.ex.token_is_eog(this.model, id) !== 0; }

  // A streaming detokenizer: push(id) and flush() return Uint8Array pieces
  // of UTF-8 that always end on a character boundary. continues: the text
  // follows earlier text (keeps the first piece's leading space).
  detokenizer({ renderSpecial = false, continues = false } = {}) {
    const { mod, ex } = this;
    const d = mod.handle(ex.detok_new(this.model, (renderSpecial ? 1 : 0) | (continues ? 2 : 0)));
    const text = (n) => mod.bytes(ex.detok_text(d), n);
    return {
      push: (id) => text(ex.detok_push(d, id)),
      flush: () => text(ex.detok_flush(d)),
      free: () => ex.detok_free(d),
    };
  }

  // The prompt text for a chat turn, by the model's template or a named one.
  chatPrompt(user, { system = null, template = null } = {}) {
    const { mod, ex } = this;
    const strs = [template, system, user].map((s) => (s === null ? null : mod.allocString(s)));
    try {
      const p = mod.handle(ex.chat_prompt(this.model, ...strs.map((s) => (s ? s.ptr : 0))));
      const out = mod.string(p);
      mod.free(p);
      return out;
    } finally {
      for (const s of strs) if (s) mod.free(s.ptr);
    }
  }

  // A whole conversation [{ role, content }, ...] as prompt text (the
  // export chat_render, src/wasm/chat_render.c). addAssistant: end with the
  // opening of the assistant's turn.
  chatRender(messages, { template = null, addAssistant = true } = {}) {
    const { mod, ex } = this;
    const parts = [];
    for (const m of messages) parts.push(mod.encoder.encode(String(m.role)), mod.encoder.encode(String(m.content)));
    const len = parts.reduce((n, p) => n + p.length + 1, 0);
    const buf = mod.alloc(len);
    const tpl = template === null ? null : mod.allocString(template);
    try {
      const mem = mod.u8();
      let at = buf;
      for (const p of parts) {
        mem.set(p, at);
        mem[at + p.length] = 0;
        at += p.length + 1;
      }
      const p = mod.handle(ex.chat_render(this.model, tpl ? tpl.ptr : 0, buf, len, messages.length, addAssistant ? 1 : 0));
      const out = mod.string(p);
      mod.free(p);
      return out;
    } finally {
      mod.free(buf);
      if (tpl) mod.free(tpl.ptr);
    }
  }

  #reserve(nIds, nLogits) {
    const { mod } = this;
    if (nIds > this.idsCap) {
      if (this.idsPtr) mod.free(this.idsPtr);
      this.idsPtr = 0;
      this.idsPtr = mod.alloc(nIds * 4);
      this.idsCap = nIds;
    }
    if (nLogits > this.logitsCap) {
      if (this.logitsPtr) mod.free(this.logitsPtr);
      this.logitsPtr = 0;
      this.logitsPtr = mod.alloc(nLogits * 4);
      this.logitsCap = nLogits;
    }
  }

  // Appends ids to the context and evaluates them; leaves the logits in
  // wasm memory (lastLogitsPtr) without copying them out.
  async step(ids, { allLogits = false } = {}) {
    const n = ids.length;
    if (n === 0) throw new EngineError('no tokens to evaluate');
    const V = this.nVocab;
    this.#reserve(n, allLogits ? n * V : V);
    this.mod.i32(this.idsPtr, n).set(ids);
    await this.backend.eval(this.idsPtr, n, this.logitsPtr, allLogits);
    return this.logitsPtr;
  }

  // The same, returning a copy of the logits: Float32Array [n * n_vocab]
  // (allLogits) or [n_vocab] (the last token's).
  async eval(ids, { allLogits = false } = {}) {
    await this.step(ids, { allLogits });
    return this.mod.f32(this.logitsPtr, (allLogits ? ids.length : 1) * this.nVocab).slice();
  }

  // A sampler: { sample() (from the last step's logits), sampleFrom(Float32Array),
  // accept(id), reset(), free() }. params: temp, topK, topP, minP,
  // repeatPenalty, repeatLastN, frequencyPenalty, presencePenalty, seed
  // (number or BigInt); missing ones take llama.cpp's CLI defaults.
  sampler(params = {}) {
    const { mod, ex } = this;
    const p = mod.handle(ex.sampler_params());
    let s;
    try {
      const set = (key, v) => {
        const k = mod.allocString(key);
        try {
          mod.status(ex.sampler_param_set(p, k.ptr, v));
        } finally {
          mod.free(k.ptr);
        }
      };
      for (const [js, c] of Object.entries(SAMPLER_KEYS)) if (params[js] !== undefined) set(c, Number(params[js]));
      if (params.seed !== undefined) {
        const seed = BigInt.asUintN(64, BigInt(params.seed));
        set('seed_hi', Number(seed >> 32n));
        set('seed_lo', Number(seed & 0xffffffffn));
      }
      s = mod.handle(ex.sampler_new(p, this.nVocab));
    } finally {
      mod.free(p);
    }
    return {
      sample: () => ex.sampler_sample(s, this.logitsPtr),
      sampleFrom: (logits) => {
        this.#reserve(0, this.nVocab);
        mod.f32(this.logitsPtr, this.nVocab).set(logits);
        return ex.sampler_sample(s, this.logitsPtr);
      },
      accept: (id) => ex.sampler_accept(s, id),
      reset: () => ex.sampler_reset(s),
      free: () => ex.sampler_free(s),
    };
  }

  // Whether greedySteps can serve these sampling parameters: greedy (temp
  // <= 0) without penalties, on a backend that takes the argmax itself.
  gpuGreedy(sampling = {}) {
    return !!this.backend.greedy && sampling.temp !== undefined && sampling.temp <= 0 &&
      (sampling.repeatPenalty ?? 1) === 1 && !sampling.frequencyPenalty && !sampling.presencePenalty;
  }

  // Greedy decoding with the argmax on the GPU (backend.greedy): evaluates
  // `id` (the token just chosen) and yields up to `limit` ids, each the
  // argmax after the previous, while the GPU already evaluates the next ones:
  // about GREEDY_QUEUE_MS of steps are in flight (at most
  // backend.greedySlots), so the GPU waits neither for the host between
  // tokens nor through a pause of the host (a garbage collection) shorter
  // than that; stopping wastes at most that much GPU time. The context ends
  // as if step() had followed every id but the last yielded (the consumer
  // stops at an end-of-generation id without evaluating it): the steps in
  // flight when the consumer stops are dropped.
  async *greedySteps(id, limit) {
    if (limit <= 0) return;
    const b = this.backend;
    const n0 = this.nPast();
    const slots = b.greedySlots ?? 2;
    const inFlight = []; // read-back slots, oldest first
    let slot = 0, yielded = 0, submitted = 0;
    // steps queued: about GREEDY_QUEUE_MS of them (by the time between ids),
    // at most the slots
    let depth = slots, stepMs = 0, last = 0;
    const submit = (token) => {
      b.greedyBegin(token, slot);
      inFlight.push(slot);
      slot = (slot + 1) % slots;
      submitted++;
    };
    try {
      submit(id);
      while (yielded < limit) {
        // the ids the steps in flight will choose; the queue grows by one a
        // step, so that the first id is not held up by recording all of them
        while (inFlight.length < Math.min(depth, yielded + 2) && submitted < limit) submit(-1);
        const next = await b.greedyEnd(inFlight.shift());
        const now = performance.now();
        if (last) {
          // a pause of the host counts little (its backlog comes back at once after it)
          const gap = stepMs ? Math.min(now - last, 2 * stepMs) : now - last;
          stepMs = stepMs ? 0.9 * stepMs + 0.1 * gap : gap;
          depth = Math.max(2, Math.min(slots, Math.ceil(GREEDY_QUEUE_MS / Math.max(stepMs, 0.01))));
        }
        last = now;
        yielded++;
        yield next;
      }
    } finally {
      while (inFlight.length) await b.greedyEnd(inFlight.shift());
      if (this.nPast() > n0 + yielded) this.truncate(n0 + yielded);
    }
  }

  // Generates after prompt ids (evaluated from the current context): yields
  // { id, bytes } per token (bytes: the UTF-8 text it completes; a final
  // { id: -1, bytes } holds what the detokenizer kept back). Stops at
  // nPredict tokens or an end-of-generation token. stats (optional object)
  // receives nPrompt, nGen, promptSeconds, genSeconds.
  async *generate(promptIds, { nPredict = 128, sampling = {}, renderSpecial = false, stats = {} } = {}) {
    const smp = this.sampler(sampling);
    const det = this.detokenizer({ renderSpecial, continues: true });
    try {
      for (const id of promptIds) smp.accept(id);
      const t0 = now();
      await this.step(promptIds);
      const t1 = now();
      Object.assign(stats, { nPrompt: promptIds.length, promptSeconds: t1 - t0, nGen: 0, genSeconds: 0 });
      const gpuGreedy = this.gpuGreedy(sampling);
      for (let n = 0; n < nPredict; n++) {
        const id = smp.sample();
        if (this.isEog(id)) break;
        smp.accept(id);
        stats.nGen = n + 1;
        yield { id, bytes: det.push(id) };
        if (gpuGreedy) {
          // the rest with the argmax on the GPU, a step ahead
          for await (const next of this.greedySteps(id, nPredict - n - 1)) {
            if (this.isEog(next)) break;
            smp.accept(next);
            stats.nGen++;
            yield { id: next, bytes: det.push(next) };
          }
          break;
        }
        if (n + 1 < nPredict) await this.step([id]);
      }
      stats.genSeconds = now() - t1;
      const rest = det.flush();
      if (rest.length) yield { id: -1, bytes: rest };
    } finally {
      det.free();
      smp.free();
    }
  }
}

function now() { return performance.now() / 1000; }

function baseName(path) {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  return i >= 0 ? path.slice(i + 1) : path;
}
