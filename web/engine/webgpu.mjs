// webgpu.mjs - the WebGPU bridge: implements engine.wasm's `webgpu` imports
// (src/gpu/bridge.h) on a navigator.gpu-style device (Chrome, or Dawn in
// Node through the npm package `webgpu`), and the 'webgpu' backend factory
// that engine.mjs uses. The C side decides every buffer, kernel and dispatch;
// this file only turns handles into WebGPU calls.

import { EngineError } from './wasm.mjs';
import { TUNING_CANDIDATES, tuningWanted } from './gpu-tune.mjs';

// Usage flags of bridge.h (WG_USAGE_*).
const USAGE_STORAGE = 1;
const USAGE_UNIFORM = 2;
const USAGE_READBACK = 4;

// The WebGPU entry point: options.gpu, navigator.gpu, or Dawn in Node
// (options.dawnPath or $STREAMLLM_DAWN_NODE: a dawn.node file, else the npm
// package `webgpu`). options.dawnFlags / $STREAMLLM_DAWN_FLAGS (comma
// separated): Dawn's options, default the Vulkan backend without zero-filling
// workgroup memory (no kernel reads it before writing it; SwiftShader takes
// a second per kernel to compile the fill of a 12 KiB tile).
export async function getGPU(options = {}) {
  if (options.gpu) return options.gpu;
  if (globalThis.navigator?.gpu) return globalThis.navigator.gpu;
  const env = globalThis.process?.env ?? {};
  const flags = options.dawnFlags ?? (env.STREAMLLM_DAWN_FLAGS ? env.STREAMLLM_DAWN_FLAGS.split(',')
    : ['backend=vulkan', 'enable-dawn-features=disable_workgroup_init']);
  const dawnPath = options.dawnPath ?? env.STREAMLLM_DAWN_NODE;
  let dawn;
  try {
    if (dawnPath) {
      const { createRequire } = await import('node:module');
      dawn = createRequire(import.meta.url)(dawnPath);
    } else {
      dawn = await import('webgpu');
    }
  } catch (e) {
    throw new EngineError(`no WebGPU: not in a browser with WebGPU, and Dawn for Node cannot be loaded (${e.message})`);
  }
  Object.assign(globalThis, dawn.globals);
  return dawn.create(flags);
}

// Features the engine uses when the adapter has them.
const OPTIONAL_FEATURES = ['shader-f16', 'subgroups'];
// Limits the engine asks for: as high as the adapter allows.
const WANTED_LIMITS = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupStorageSize', 'maxStorageBuffersPerShaderStage', 'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension'];

// An adapter and a device with the limits and features above.
export async function requestDevice(options = {}) {
  const gpu = await getGPU(options);
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  if (!adapter) throw new EngineError('no WebGPU adapter');
  const wanted = options.profile ? [...OPTIONAL_FEATURES, 'timestamp-query'] : OPTIONAL_FEATURES;
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f) && !(options.disableFeatures ?? []).includes(f));
  const requiredLimits = {};
  for (const k of WANTED_LIMITS) if (adapter.limits[k] !== undefined) requiredLimits[k] = adapter.limits[k];
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  const ai = adapter.info ?? {};
  const info = {
    vendor: ai.vendor ?? '', architecture: ai.architecture ?? '', device: ai.device ?? '',
    description: ai.description ?? '', isFallbackAdapter: ai.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false,
    features: [...device.features].sort(),
    wgslLanguageFeatures: [...(gpu.wgslLanguageFeatures ?? [])].sort(),
    limits: Object.fromEntries(WANTED_LIMITS.concat(['minStorageBufferOffsetAlignment']).map((k) => [k, device.limits[k]])),
  };
  return { gpu, adapter, device, info };
}

// The bridge: { imports, attach(memory), settle(), errors, stats }.
// stats counts what the engine really allocates (buffers, bytes), for tests.
// wgslLanguageFeatures: the GPU object's (the kernels use subgroup_id when
// the device has subgroups and WGSL has that builtin).
export function createBridge(device, { wgslLanguageFeatures = globalThis.navigator?.gpu?.wgslLanguageFeatures, profile = false, firstChunk = 4 } = {}) {
  const objs = [null]; // handle -> { kind, ... }
  const freeHandles = [];
  const errors = [];
  let pending = [];
  let readsInFlight = 0; // read-backs submitted whose mapping has not resolved
  let memory = null;
  const stats = { buffers: 0, bufferBytes: 0, peakBytes: 0, bytesWritten: 0, pipelines: 0, subgroupPipelines: 0, bindGroups: 0, dispatches: 0, runs: 0, encodeMs: 0, preRecordMs: 0, readMs: 0 };
  const decoder = new TextDecoder();

  const onError = (ev) => errors.push(ev.error?.message ?? String(ev));
  if (typeof device.addEventListener === 'function') device.addEventListener('uncapturederror', onError);
  else device.onuncapturederror = onError;
  device.lost?.then((l) => { if (l.reason !== 'destroyed') errors.push(`device lost: ${l.message}`); });

  const add = (o) => {
    const h = freeHandles.length ? freeHandles.pop() : objs.length;
    objs[h] = o;
    return h;
  };
  const get = (h, kind) => {
    const o = objs[h];
    if (!o || o.kind !== kind) throw new EngineError(`webgpu bridge: handle ${h} is not a ${kind}`);
    return o;
  };
  // Errors of a creation call arrive later: collect them, settle() waits.
  const scoped = (what, fn, explain) => {
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    const r = fn();
    for (let i = 0; i < 2; i++) {
      pending.push(device.popErrorScope().then(async (e) => {
        if (e) errors.push(`${what}: ${e.message}${explain ? await explain() : ''}`);
      }));
    }
    return r;
  };
  const mem = () => {
    if (!memory) throw new EngineError('webgpu bridge: no wasm memory attached');
    return memory.buffer;
  };

  const caps = () => {
    const l = device.limits;
    return [l.maxStorageBufferBindingSize, l.maxBufferSize, l.maxComputeInvocationsPerWorkgroup,
      l.maxComputeWorkgroupStorageSize, l.maxComputeWorkgroupsPerDimension, l.minStorageBufferOffsetAlignment,
      l.maxStorageBuffersPerShaderStage, device.features.has('shader-f16') ? 1 : 0,
      device.features.has('subgroups') ? 1 : 0, wgslLanguageFeatures?.has?.('subgroup_id') ? 1 : 0,
      wgslLanguageFeatures?.has?.('packed_4x8_integer_dot_product') ? 1 : 0,
      device.features.has('subgroups') ? (device.adapterInfo?.subgroupMinSize ?? 0) : 0];
  };
  let capList = null;

  // One step's command buffers: the program's dispatches in compute passes,
  // (with profiling: one command buffer, each dispatch in its own pass
  // between timestamps), then the copy of the read-back. Dawn turns a
  // command buffer into the GPU's commands when it is submitted (~1.7 us per
  // dispatch on an H200 host), while the GPU waits for the step: so the
  // first command buffers are small (4, 8, 16... dispatches) and the GPU
  // starts on them while the next ones are still being translated
  // (firstChunk; 0: the step in one command buffer). Not when the GPU is
  // still busy with earlier steps (greedy decoding keeps one in flight):
  // then every submit only adds a gap on the GPU (Llama-3.2-1B greedy: 836
  // us per token in one command buffer, 890-1000 in chunks).
  function record(program, src, offset, len, st, chunked) {
    if (profiler) {
      const enc = device.createCommandEncoder();
      profiler.record(enc, program);
      if (st) enc.copyBufferToBuffer(get(src, 'buffer').buffer, offset, st.buffer, 0, len);
      return [enc.finish()];
    }
    const cbs = [];
    const list = program.list;
    for (let i = 0, chunk = (chunked && firstChunk) || list.length; i < list.length || !cbs.length; chunk *= 2) {
      const enc = device.createCommandEncoder();
      const end = Math.min(list.length, i + chunk);
      const pass = enc.beginComputePass();
      let last = null;
      for (; i < end; i++) {
        const [pipeline, group, x, y, z] = list[i];
        if (pipeline !== last) pass.setPipeline(pipeline);
        last = pipeline;
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(x, y, z);
      }
      pass.end();
      if (i === list.length && st) enc.copyBufferToBuffer(get(src, 'buffer').buffer, offset, st.buffer, 0, len);
      cbs.push(enc.finish());
    }
    return cbs;
  }

  const compiled = new Map(); // kernel text -> pipeline compiled ahead (precompile)
  const compiling = new Map(); // kernel text -> its compile in flight
  const imports = {
    caps(which) {
      capList ??= caps();
      return capList[which] ?? 0;
    },
    buffer_create(size, usage) {
      const U = GPUBufferUsage;
      const flags = usage === USAGE_STORAGE ? U.STORAGE | U.COPY_DST | U.COPY_SRC
        : usage === USAGE_UNIFORM ? U.UNIFORM | U.COPY_DST
          : usage === USAGE_READBACK ? U.MAP_READ | U.COPY_DST : 0;
      if (!flags) return 0;
      let buffer;
      try {
        buffer = scoped(`buffer of ${size} bytes`, () => device.createBuffer({ size, usage: flags }));
      } catch (e) {
        errors.push(`buffer of ${size} bytes: ${e.message}`);
        return 0;
      }
      stats.buffers++;
      stats.bufferBytes += size;
      stats.peakBytes = Math.max(stats.peakBytes, stats.bufferBytes);
      return add({ kind: 'buffer', buffer, size, mapped: null });
    },
    buffer_write(buf, offset, ptr, len) {
      len >>>= 0;
      device.queue.writeBuffer(get(buf, 'buffer').buffer, offset, mem(), ptr >>> 0, len);
      stats.bytesWritten += len;
    },
    pipeline_create(ptr, len) {
      const code = decoder.decode(new Uint8Array(mem(), ptr >>> 0, len >>> 0));
      let module;
      const ready = compiled.get(code);
      compiled.delete(code);
      const pipeline = ready ?? scoped('compute pipeline', () => {
        module = device.createShaderModule({ code });
        return device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      }, async () => {
        const info = await module.getCompilationInfo?.();
        const msgs = (info?.messages ?? []).map((m) => `\n  ${m.lineNum}:${m.linePos} ${m.message}`).join('');
        return `${msgs}\n--- source ---\n${code}`;
      });
      stats.pipelines++;
      if (code.startsWith('enable subgroups;')) stats.subgroupPipelines++;
      const label = /^\/\/ stream-llm WebGPU kernel: ([^(]*?) \(/m.exec(code)?.[1] ?? 'kernel';
      return add({ kind: 'pipeline', pipeline, code, label });
    },
    bind_group_create(pipe, ptr, n) {
      const p = get(pipe, 'pipeline');
      const u32 = new Uint32Array(mem(), ptr >>> 0, 4 * n);
      const entries = [];
      for (let i = 0; i < n; i++) {
        const b = get(u32[4 * i + 1], 'buffer');
        entries.push({ binding: u32[4 * i], resource: { buffer: b.buffer, offset: u32[4 * i + 2], size: u32[4 * i + 3] } });
      }
      const group = scoped('bind group', () => device.createBindGroup({ layout: p.pipeline.getBindGroupLayout(0), entries }));
      stats.bindGroups++;
      return add({ kind: 'group', group });
    },
    program_create() {
      return add({ kind: 'program', list: [], runs: 0, next: null, nextKey: null });
    },
    program_dispatch(prog, pipe, group, x, y, z) {
      const p = get(pipe, 'pipeline');
      get(prog, 'program').list.push([p.pipeline, get(group, 'group').group, x >>> 0, y >>> 0, z >>> 0, p.label]);
    },
    program_run(prog, src, offset, len, staging) {
      if (errors.length) return -1;
      const t0 = performance.now();
      const program = get(prog, 'program');
      const st = len > 0 ? get(staging, 'buffer') : null;
      if (st?.mapped) {
        errors.push('read-back started while the previous one was not read');
        return -1;
      }
      // read-backs not yet done: the GPU has earlier steps to run
      const chunked = readsInFlight === 0;
      // the command buffer recorded ahead for this run, if it reads back the same way
      const key = [src, offset, len, staging, chunked].join(':');
      const cbs = program.next && program.nextKey === key ? program.next : record(program, src, offset, len, st, chunked);
      program.next = null;
      stats.dispatches += program.list.length;
      stats.runs++;
      for (const cb of cbs) device.queue.submit([cb]);
      stats.encodeMs += performance.now() - t0; // host time before the step was submitted
      if (st) {
        readsInFlight++;
        st.mapped = st.buffer.mapAsync(GPUMapMode.READ, 0, len).then(() => {
          readsInFlight--;
          return true;
        }, (e) => {
          readsInFlight--;
          errors.push(`read-back: ${e.message}`);
          return false;
        });
        st.mapLen = len;
        pending.push(st.mapped);
      }
      // A program run again (decode) will most likely run next too: record its
      // next command buffer now, while the GPU runs this one, so that the next
      // step (its token ids and step uniform are written to the queue before
      // it) is submitted without the host recording ~100 dispatches first.
      // Its read-back is the one that followed this run's the last time: the
      // same, or, for greedy decoding's slots taken in turn, the next one.
      const read = [src, offset, len, staging];
      const readKey = read.join(':');
      program.follows ??= new Map(); // read-back -> the one of the run after it
      if (program.lastRead) program.follows.set(program.lastRead, read);
      program.lastRead = readKey;
      if (!profiler && program.runs++ >= 1) {
        const t1 = performance.now();
        const [ps, po, pl, pst] = program.follows.get(readKey) ?? read;
        program.next = record(program, ps, po, pl, pl > 0 ? get(pst, 'buffer') : null, chunked);
        program.nextKey = [ps, po, pl, pst, chunked].join(':');
        stats.preRecordMs += performance.now() - t1;
      }
      return 0;
    },
    read_mapped(staging, ptr, len) {
      const st = get(staging, 'buffer');
      len >>>= 0;
      if (!st.mapped) {
        errors.push('read_mapped without a read-back');
        return -1;
      }
      st.mapped = null;
      if (errors.length) {
        try { st.buffer.unmap(); } catch { /* not mapped after an error */ }
        return -1;
      }
      const t0 = performance.now();
      if (len) new Uint8Array(mem(), ptr >>> 0, len).set(new Uint8Array(st.buffer.getMappedRange(0, len)));
      stats.readMs += performance.now() - t0; // host time copying read-backs
      st.buffer.unmap();
      return 0;
    },
    release(h) {
      const o = objs[h];
      if (!o) return;
      if (o.kind === 'buffer') {
        o.buffer.destroy();
        stats.buffers--;
        stats.bufferBytes -= o.size;
      }
      objs[h] = null;
      freeHandles.push(h);
    },
    error_text(ptr, cap) {
      if (!errors.length) return 0;
      const bytes = new TextEncoder().encode(errors[0]);
      cap >>>= 0;
      if (cap > 0) {
        const n = Math.min(bytes.length, cap - 1);
        const out = new Uint8Array(mem(), ptr >>> 0, cap);
        out.set(bytes.subarray(0, n));
        out[n] = 0;
      }
      return bytes.length;
    },
  };

  // Profiling (options.profile and the device has timestamp-query): each
  // dispatch in its own compute pass between two GPU timestamps; the
  // durations add up per kernel label in stats.kernels once read back.
  // The separate passes cost time of their own: use it for the breakdown,
  // not for end-to-end speed. profile 'step': the step's one pass between
  // two timestamps (label 'step'): the GPU's time per step, to set against
  // the wall time (the rest is the host and the read-back's round trip).
  let profiler = null;
  const wholeStep = profile === 'step';
  if (profile && device.features?.has('timestamp-query')) {
    stats.kernels = {}; // label -> { ns, count }
    profiler = {
      record(enc, program) {
        const n = Math.min(program.list.length, 2048);
        if (!program.querySet) {
          program.querySet = device.createQuerySet({ type: 'timestamp', count: 2 * n });
          program.resolve = device.createBuffer({ size: 16 * n, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
        }
        let last = null;
        let labels;
        if (wholeStep) {
          // the step's dispatches in one pass, as without profiling
          const pass = enc.beginComputePass({ timestampWrites: { querySet: program.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
          for (const [pipeline, group, x, y, z] of program.list) {
            if (pipeline !== last) pass.setPipeline(pipeline);
            last = pipeline;
            pass.setBindGroup(0, group);
            pass.dispatchWorkgroups(x, y, z);
          }
          pass.end();
          labels = ['step'];
        } else {
          program.list.forEach(([pipeline, group, x, y, z], i) => {
            const timestampWrites = i < n ? { querySet: program.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } : undefined;
            const pass = enc.beginComputePass(timestampWrites ? { timestampWrites } : {});
            if (pipeline !== last || timestampWrites) pass.setPipeline(pipeline);
            last = pipeline;
            pass.setBindGroup(0, group);
            pass.dispatchWorkgroups(x, y, z);
            pass.end();
          });
          labels = program.list.slice(0, n).map((d) => d[5]);
        }
        const nq = labels.length;
        enc.resolveQuerySet(program.querySet, 0, 2 * nq, program.resolve, 0);
        const read = device.createBuffer({ size: 16 * nq, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
        enc.copyBufferToBuffer(program.resolve, 0, read, 0, 16 * nq);
        // after the submit (program_run submits right after record)
        queueMicrotask(() => pending.push(read.mapAsync(GPUMapMode.READ).then(() => {
          const t = new BigUint64Array(read.getMappedRange());
          labels.forEach((label, i) => {
            const k = (stats.kernels[label] ??= { ns: 0, count: 0 });
            if (t[2 * i + 1] > t[2 * i]) k.ns += Number(t[2 * i + 1] - t[2 * i]);
            k.count++;
          });
          read.unmap();
          read.destroy();
        }, () => read.destroy())));
      },
    };
  }

  return {
    imports,
    stats,
    errors,
    device,
    attach(wasmMemory) { memory = wasmMemory; },
    // Waits for the read-back into buffer handle h (others may stay in flight).
    async waitRead(h) {
      const p = get(h, 'buffer').mapped;
      await p;
      pending = pending.filter((x) => x !== p); // (settle() need not wait for it again)
    },
    // Waits for every pending read-back and error report.
    async settle() {
      while (pending.length) {
        const p = pending;
        pending = [];
        await Promise.all(p);
      }
    },
    // Compiles kernels ahead with createComputePipelineAsync, all at once
    // (off the critical path: while the weights upload; in Node on an H200
    // the candidates of an 8B took 11.5 s so, 20 s one after another);
    // pipeline_create then takes them ready. A kernel that fails here is made again there, which
    // reports the error.
    async precompile(codes) {
      await Promise.all(codes.map((code) => {
        if (compiled.has(code)) return null;
        let p = compiling.get(code);
        if (!p) {
          p = (async () => {
            try {
              const module = device.createShaderModule({ code });
              compiled.set(code, await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } }));
            } catch {
              /* made again by pipeline_create, which reports the error */
            } finally {
              compiling.delete(code);
            }
          })();
          compiling.set(code, p);
        }
        return p;
      }));
    },
    // Throws the first device error, if any (after settle()).
    check(prefix = 'WebGPU') {
      if (errors.length) throw new EngineError(`${prefix}: ${errors[0]}`);
    },
  };
}

// ---- the backend factory (see src/wasm/README.md, "The JS backend contract") ----

// The model's tensors as the uploader needs them: { name (a C string in
// wasm memory, alive with the model), bytes, offset, file, layer (blk.N: N,
// else -1) }.
function tensorList(mod, model) {
  const ex = mod.exports;
  const n = mod.status(ex.model_n_tensors(model));
  const list = [];
  for (let i = 0; i < n; i++) {
    const name = mod.handle(ex.model_tensor_name(model, i));
    const m = /^blk\.(\d+)\./.exec(mod.string(name));
    list.push({
      name, bytes: ex.model_tensor_bytes(model, i), offset: ex.model_tensor_offset(model, i),
      file: ex.model_tensor_file(model, i), layer: m ? Number(m[1]) : -1,
    });
  }
  return list;
}

// Uploads tensors from their files to their GPU buffers, in pieces of at
// most `chunk` bytes (a multiple of 4) through one wasm buffer; tensors the
// engine does not take now (not used on the GPU, or a streamed layer's that
// is not wanted yet) are skipped without reading them. Returns the bytes
// uploaded.
async function uploadTensors(mod, e, tensors, sources, chunk) {
  const ex = mod.exports;
  chunk = Math.max(4, chunk - (chunk % 4));
  let cap = 0;
  let staging = 0;
  let uploaded = 0;
  try {
    for (const t of tensors) {
      if (mod.status(ex.gpu_upload_tensor(e, t.name, 0, 0, 0)) === 1) continue;
      // vectors and rope factors must come whole; they are small
      const piece = t.bytes <= (1 << 20) ? t.bytes : chunk;
      if (piece > cap) {
        if (staging) mod.free(staging);
        staging = 0;
        staging = mod.alloc(piece);
        cap = piece;
      }
      const src = sources[t.file];
      for (let done = 0; done < t.bytes; done += piece) {
        const len = Math.min(piece, t.bytes - done);
        await src.readInto(t.offset + done, new Uint8Array(mod.memory.buffer, staging, len));
        mod.status(ex.gpu_upload_tensor(e, t.name, done, staging, len));
        uploaded += len;
      }
    }
  } finally {
    if (staging) mod.free(staging);
  }
  return uploaded;
}

// options: gpu/dawnPath/dawnFlags (which WebGPU), budget (bytes the plan may
// use, 0: no limit), onDemand (default true: a model over the budget keeps
// the layers that fit on the GPU and streams the others from its files or
// the weight cache in every forward pass; false: refused), nOut (logits rows
// per read-back when all logits are wanted, default 64), maxBinding (lower
// the binding limit: tests), disableFeatures (e.g. ['shader-f16']),
// kvF16 (default false: f16 K/V caches, half the KV memory, when the device
// has shader-f16; off by default because the llama.cpp references in the
// test data were made with an f32 KV cache, so conformance runs keep f32),
// profile (GPU timestamps per kernel into bridge.stats.kernels, where the
// device has timestamp-query; slower: for bench/gpu.mjs --profile; 'step':
// of each step's one pass, label 'step'),
// layouts ('fast', the default: Q4_0 and Q8_0 matrices in their GPU layouts
// of src/gpu/layout.h, and Q4_K and Q6_K too with the int8 token; 'raw':
// every matrix as stored in the file; 'all': every layout, also without the
// int8 token), matvec { rows, units, minWorkgroups }
// (mat-vec tuning, src/gpu/kernels.h; unset: defaults), int8 (default
// true: mat-vecs of matrices in a layout take the token as int8 blocks and
// use dot4I8Packed where WGSL has it, llama.cpp's arithmetic, 1.5x faster
// decode on an H200; false: the f32 token; prefill mat-muls of such matrices
// likewise), matmul { tokens, rows, invTokens } (the int8 mat-mul's tile:
// tokens x rows per workgroup, tokens per invocation; src/gpu/kernels.h,
// sl_gpu_matmul_tuning_ok; unset: defaults), firstChunk (dispatches in a step's
// first command buffer, then twice as many in each next; 0: one command
// buffer; default 4: see record()), tune (per-device tuning of the decode
// mat-vecs at load, gpu-tune.mjs: 'auto', the default: on hardware adapters,
// the result cached; true: also on software ones; false: never; tuneCache:
// where results are kept, { get, set }; tuneSteps: decoding steps per timing,
// for tests).
// In Node, $STREAMLLM_GPU_BUDGET, $STREAMLLM_GPU_N_OUT,
// $STREAMLLM_GPU_MAX_BINDING, $STREAMLLM_GPU_LAYOUT (raw, all),
// $STREAMLLM_GPU_MV_ROWS / _UNITS / _MIN_WGS, $STREAMLLM_GPU_TUNE (1, 0, auto), $STREAMLLM_GPU_INT8=0,
// $STREAMLLM_GPU_MM (TOKENS,ROWS,INV_TOKENS, e.g. 64,64,2) and
// $STREAMLLM_GPU_FIRST_CHUNK set budget, nOut, maxBinding, layouts, matvec,
// int8, matmul, firstChunk and tune when the options do not.
const LAYOUTS = { fast: 0, raw: 1, all: 2 };
export function layoutsCode(name = 'fast') {
  if (!(name in LAYOUTS)) throw new EngineError(`webgpu: layouts must be one of ${Object.keys(LAYOUTS).join(', ')}, not ${name}`);
  return LAYOUTS[name];
}

export async function webgpuBackend(options = {}) {
  const env = globalThis.process?.env ?? {};
  const num = (v) => (v === undefined || v === '' ? undefined : Number(v));
  options = {
    budget: num(env.STREAMLLM_GPU_BUDGET), nOut: num(env.STREAMLLM_GPU_N_OUT), maxBinding: num(env.STREAMLLM_GPU_MAX_BINDING),
    layouts: env.STREAMLLM_GPU_LAYOUT || undefined, int8: env.STREAMLLM_GPU_INT8 !== '0', firstChunk: num(env.STREAMLLM_GPU_FIRST_CHUNK),
    tune: !env.STREAMLLM_GPU_TUNE ? undefined : env.STREAMLLM_GPU_TUNE === '1' ? true : env.STREAMLLM_GPU_TUNE === '0' ? false : 'auto',
    matvec: { rows: num(env.STREAMLLM_GPU_MV_ROWS), units: num(env.STREAMLLM_GPU_MV_UNITS), minWorkgroups: num(env.STREAMLLM_GPU_MV_MIN_WGS) },
    matmul: (([tokens, rows, invTokens]) => ({ tokens: num(tokens), rows: num(rows), invTokens: num(invTokens) }))((env.STREAMLLM_GPU_MM ?? '').split(',')),
    ...options,
  };
  // gpu and adapter stay referenced: Dawn tears the device down when they are collected
  const { gpu, adapter, device, info } = await requestDevice(options);
  const bridge = createBridge(device, { wgslLanguageFeatures: gpu.wgslLanguageFeatures, profile: options.profile, firstChunk: options.firstChunk });
  bridge.keepAlive = [gpu, adapter];
  let modRef = null;
  let pendingSources = null;
  return {
    name: 'webgpu',
    imports: { webgpu: bridge.imports },
    bridge,
    device,
    options, // as resolved from the arguments and the environment
    attach(mod) {
      modRef = mod;
      bridge.attach(mod.memory);
    },
    adapterInfo: () => info,
    // The model is built from the headers alone; its weights are streamed
    // from the sources straight to the GPU buffers the plan gives them
    // (newContext, once the context size is known), through a bounded
    // staging area in wasm memory. The sources stay open until newContext
    // returned (engine.mjs closes them after it, unless the context keeps
    // them: ownsSources). reread (optional, (k) -> source of file k) gives
    // the files again for on-demand layers when the sources can be read
    // only once (a download).
    async load({ mod, model, sources, name = null, reread = null }) {
      const nm = name ? mod.allocString(name) : null;
      try {
        mod.status(mod.exports.model_load(model, nm ? nm.ptr : 0));
      } finally {
        if (nm) mod.free(nm.ptr);
      }
      pendingSources = { sources, reread };
    },
    async newContext({ mod = modRef, model, nCtx = 0, nBatch = 0 }) {
      const ex = mod.exports;
      if (!pendingSources) throw new EngineError('webgpu: newContext without load');
      const { sources, reread } = pendingSources;
      pendingSources = null;
      const tune = options.matvec ?? {};
      const mm = options.matmul ?? {};
      const e = mod.handle(ex.gpu_new(model, nCtx, nBatch, options.nOut ?? 64, options.budget ?? 0,
        options.maxBinding ?? 0, options.onDemand === false ? 0 : 1, options.kvF16 ? 1 : 0, layoutsCode(options.layouts),
        tune.rows ?? 0, tune.units ?? 0, tune.minWorkgroups ?? 0, options.int8 === false ? 0 : 1,
        mm.tokens ?? 0, mm.rows ?? 0, mm.invTokens ?? 0));
      // compiles the kernels that these mat-vec tunings would add (not made yet)
      const prepareTunings = async (list) => {
        const codes = [];
        for (const { rows = 0, units = 0, minWorkgroups = 0 } of list) {
          const p = mod.handle(ex.gpu_matvec_tuning_sources(e, rows, units, minWorkgroups));
          try {
            const mem = mod.u8();
            for (let at = p; mem[at] !== 0;) {
              let end = at;
              while (mem[end] !== 0) end++;
              codes.push(new TextDecoder().decode(mem.slice(at, end)));
              at = end + 1;
            }
          } finally {
            mod.free(p);
          }
        }
        await bridge.precompile(codes);
      };
      // the kernels of the tuning candidates compiled while the weights upload
      // (gpu-tune.mjs times them after the load: one after another, their
      // compiles took 2-5 s per candidate for Llama-3.1-8B on an H200)
      const fixedTuning = !!(tune.rows || tune.units || tune.minWorkgroups);
      const tuneAhead = !fixedTuning && tuningWanted(options.tune ?? 'auto', info) && ex.gpu_greedy_ok(e)
        ? prepareTunings(TUNING_CANDIDATES) : null;
      tuneAhead?.catch(() => {});
      const tensors = tensorList(mod, model);
      const chunk = options.uploadChunk ?? (16 << 20);
      try {
        await uploadTensors(mod, e, tensors, sources, chunk);
        mod.status(ex.gpu_check_uploaded(e));
        await bridge.settle();
        bridge.check('WebGPU setup');
      } catch (err) {
        ex.gpu_free(e);
        throw err;
      }
      const plan = JSON.parse(mod.string(ex.gpu_plan_json(e)));
      const nVocab = ex.model_n_vocab(model);
      const nOut = ex.gpu_n_out(e);
      // on demand: the streamed layers' tensors, read again in every pass
      const onDemand = plan.n_resident < plan.n_layer;
      const layerSources = onDemand ? (reread ? sources.map((_, k) => reread(k)) : sources) : null;
      const byLayer = new Map();
      for (const t of tensors) if (t.layer >= plan.n_resident) byLayer.set(t.layer, [...(byLayer.get(t.layer) ?? []), t]);
      const stats = { streamedLayers: 0, streamedBytes: 0, streamSeconds: 0 };
      const step = async (idsPtr, n, logitsPtr, all) => {
        mod.status(ex.gpu_eval_begin(e, idsPtr, n, all ? 1 : 0));
        for (let l; (l = ex.gpu_eval_wants_layer(e)) >= 0;) {
          // the GPU runs the previous segment meanwhile
          const t0 = performance.now();
          try {
            stats.streamedBytes += await uploadTensors(mod, e, byLayer.get(l) ?? [], layerSources, chunk);
          } catch (err) {
            ex.gpu_eval_cancel(e);
            throw err;
          }
          stats.streamSeconds += (performance.now() - t0) / 1000;
          stats.streamedLayers++;
          mod.status(ex.gpu_eval_continue(e));
        }
        await bridge.settle();
        mod.status(ex.gpu_eval_end(e, logitsPtr));
      };
      return {
        name: 'webgpu',
        plan,
        planSummary: mod.string(ex.gpu_plan_summary(e)),
        bridge,
        // on demand: the layers streamed so far, their bytes, the time spent reading them
        streamStats: stats,
        // the context reads the model's files again in every pass: the
        // engine must not close them before free()
        ownsSources: onDemand && !reread,
        nCtx: () => ex.gpu_n_ctx(e),
        nPast: () => ex.gpu_n_past(e),
        // dispatches of the last step (all its segments)
        lastDispatches: () => ex.gpu_last_dispatches?.(e) ?? null,
        truncate: (n) => ex.gpu_truncate(e, n),
        // Greedy decoding with the argmax on the GPU (src/gpu/gpu.h), when the
        // whole model is resident: greedyBegin(token or -1, slot) submits a
        // step (-1: of the id the previous greedy step chose there), whose
        // chosen id greedyEnd(slot) returns once read back; Engine.greedySteps
        // keeps steps in flight with them (greedySlots of them at most).
        greedy: ex.gpu_greedy_ok(e) !== 0,
        greedySlots: ex.gpu_greedy_slots(),
        // per-device tuning (gpu-tune.mjs): the kernels' hash at creation, and
        // the decode mat-vecs' tuning changed in place (not when the options fix it)
        kernelsHash: ex.gpu_kernels_hash(e),
        setMatvecTuning: fixedTuning ? null : ({ rows = 0, units = 0, minWorkgroups = 0 }) => {
          mod.status(ex.gpu_set_matvec_tuning(e, rows, units, minWorkgroups));
          bridge.check('WebGPU tuning');
        },
        // compiles the kernels of these tunings ahead, all at once
        prepareMatvecTunings: prepareTunings,
        greedyBegin: (token, slot) => mod.status(ex.gpu_greedy_begin(e, token, slot)),
        async greedyEnd(slot) {
          await bridge.waitRead(ex.gpu_greedy_staging(e, slot));
          const id = ex.gpu_greedy_end(e, slot);
          if (id < 0) mod.status(id);
          return id;
        },
        free: () => {
          ex.gpu_free(e);
          if (onDemand) for (const src of layerSources) Promise.resolve(src?.close?.()).catch(() => {});
        },
        async eval(idsPtr, n, logitsPtr, allLogits) {
          if (!allLogits || n <= nOut) return step(idsPtr, n, logitsPtr, allLogits);
          // all logits of a long sequence: nOut rows per read-back
          for (let done = 0; done < n; done += nOut) {
            const k = Math.min(nOut, n - done);
            await step((idsPtr >>> 0) + 4 * done, k, (logitsPtr >>> 0) + 4 * done * nVocab, true);
          }
        },
      };
    },
  };
}
