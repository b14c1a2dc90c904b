// wasm.mjs - loads engine.wasm (the C engine compiled by `make wasm`) and
// gives JS small helpers around its exports: memory views, strings, and
// errors. Runs unchanged in browsers, Workers and Node: the module imports
// only its own functions (extra import modules such as { webgpu: ... } are
// passed in) and a few WASI functions that wasi-libc's stdio references,
// which are stubbed here. See src/wasm/README.md for the exports.

import { threadsSupported, importsMemory, sharedMemory, startWorkers } from './threads.mjs';

const WASI = 'wasi_snapshot_preview1';
const WASI_ENOSYS = 52;
const WASI_EBADF = 8;

// Exported from a bad call: the engine's one-line message.
export class EngineError extends Error {}

// The stubs of the WASI imports: fd_write prints to the console (fd 1 and
// 2), everything else says "not supported" to the C side.
function wasiImports(module, getMemory) {
  const lines = { 1: '', 2: '' };
  const decoder = new TextDecoder();
  const stubs = {
    fd_write(fd, iovs, iovsLen, nwrittenPtr) {
      const mem = getMemory();
      if (!mem || (fd !== 1 && fd !== 2)) return WASI_EBADF;
      const dv = new DataView(mem.buffer);
      let n = 0;
      for (let i = 0; i < iovsLen; i++) {
        const base = dv.getUint32(iovs + 8 * i, true);
        const len = dv.getUint32(iovs + 8 * i + 4, true);
        lines[fd] += decoder.decode(new Uint8Array(mem.buffer, base, len).slice());
        n += len;
      }
      let nl;
      while ((nl = lines[fd].indexOf('\n')) >= 0) {
        (fd === 1 ? console.log : console.error)(lines[fd].slice(0, nl));
        lines[fd] = lines[fd].slice(nl + 1);
      }
      dv.setUint32(nwrittenPtr, n, true);
      return 0;
    },
    fd_close: () => 0,
    fd_seek: () => WASI_EBADF,
    proc_exit(code) {
      throw new EngineError(`engine called exit(${code})`);
    },
  };
  const wasi = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module !== WASI || imp.kind !== 'function') continue;
    wasi[imp.name] = stubs[imp.name] ?? (() => WASI_ENOSYS);
  }
  return wasi;
}

// Stand-ins for import modules that were not given (e.g. webgpu when the
// CPU backend is used): the module still instantiates, and a call throws.
function missingImports(module, given) {
  const out = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === WASI || imp.kind !== 'function' || given[imp.module]?.[imp.name]) continue;
    out[imp.module] ??= {};
    out[imp.module][imp.name] = () => {
      throw new EngineError(`engine.wasm called ${imp.module}.${imp.name}, but no ${imp.module} imports were given`);
    };
  }
  return out;
}

// Compiles the module from bytes, a Response, a URL string / URL, or takes
// a WebAssembly.Module as is.
async function compile(source) {
  if (source instanceof WebAssembly.Module) return source;
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) return WebAssembly.compile(source);
  if (typeof Response !== 'undefined' && source instanceof Response) return WebAssembly.compile(await source.arrayBuffer());
  const url = source instanceof URL ? source : new URL(String(source), import.meta.url);
  if (url.protocol === 'file:') {
    const { readFile } = await import('node:fs/promises');
    return WebAssembly.compile(await readFile(url));
  }
  const res = await fetch(url);
  if (!res.ok) throw new EngineError(`cannot fetch ${url}: HTTP ${res.status}`);
  return WebAssembly.compile(await res.arrayBuffer());
}

// The default location of the module: build/wasm/engine.wasm of this tree.
export const DEFAULT_WASM_URL = new URL('../../build/wasm/engine.wasm', import.meta.url);

// An instantiated engine module with helpers. `exports` are the C exports.
export class EngineModule {
  constructor(instance, module, memory = instance.exports.memory) {
    this.instance = instance;
    this.module = module;
    this.exports = instance.exports;
    this.memory = memory;
    this.threads = 1; // threads of the CPU backend, the caller included (threads.mjs)
    this.encoder = new TextEncoder();
    this.decoder = new TextDecoder();
  }

  // Views of the whole memory, made fresh on each call: memory growth
  // detaches older ones, so never keep a view across a call into C.
  u8() { return new Uint8Array(this.memory.buffer); }
  i32(ptr, n) { return new Int32Array(this.memory.buffer, ptr >>> 0, n); }
  f32(ptr, n) { return new Float32Array(this.memory.buffer, ptr >>> 0, n); }

  // The engine's last error as an EngineError (with an optional prefix).
  error(prefix) {
    const msg = this.string(this.exports.error_message());
    return new EngineError(prefix ? `${prefix}: ${msg}` : msg);
  }
  // A handle or pointer returned by C: throws the engine's error for 0, else
  // returns it unsigned (>>> 0: addresses above 2 GiB arrive negative).
  handle(p) {
    if (p === 0) throw this.error();
    return p >>> 0;
  }
  // A status or count returned by C: throws the engine's error when < 0.
  status(rc) {
    if (rc < 0) throw this.error();
    return rc;
  }

  alloc(n) {
    const p = this.exports.malloc(n) >>> 0;
    if (p === 0) throw this.error();
    return p;
  }
  free(p) { this.exports.free(p); }

  // Copies bytes into a new buffer; returns its address (free it).
  allocBytes(bytes) {
    const p = this.alloc(bytes.length);
    this.u8().set(bytes, p);
    return p;
  }
  // A NUL-terminated UTF-8 copy of a JS string: { ptr, len } (free ptr).
  allocString(s) {
    const bytes = this.encoder.encode(s);
    const ptr = this.alloc(bytes.length + 1);
    const mem = this.u8();
    mem.set(bytes, ptr);
    mem[ptr + bytes.length] = 0;
    return { ptr, len: bytes.length };
  }
  // The NUL-terminated string at ptr (UTF-8), or null for 0.
  string(ptr) {
    ptr >>>= 0;
    if (ptr === 0) return null;
    const mem = this.u8();
    let end = ptr;
    while (mem[end] !== 0) end++;
    return this.decoder.decode(mem.slice(ptr, end)); // a copy: shared memory cannot be decoded in place
  }
  // Raw bytes at ptr (copied).
  bytes(ptr, n) { return this.u8().slice(ptr >>> 0, (ptr >>> 0) + n); }
}

// The threaded build (make wasm), run on worker threads when threads > 1.
export const DEFAULT_WASM_MT_URL = new URL('../../build/wasm/engine-mt.wasm', import.meta.url);

// The relaxed-SIMD builds of both (make wasm with clang-16): faster int8 dot
// products (src/cpu/gemm_wasm.c), the same results bit for bit. Used where
// the engine runs relaxed SIMD: Chrome >= 114, Node 20 with
// --experimental-wasm-relaxed-simd.
export const DEFAULT_WASM_RELAXED_URL = new URL('../../build/wasm/engine-relaxed.wasm', import.meta.url);
export const DEFAULT_WASM_RELAXED_MT_URL = new URL('../../build/wasm/engine-relaxed-mt.wasm', import.meta.url);

// A module with one relaxed-SIMD instruction (i16x8.relaxed_dot_i8x16_i7x16_s).
const ZEROS = new Array(16).fill(0);
const RELAXED_PROBE = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 5, 1, 0x60, 0, 1, 0x7b, 3, 2, 1, 0,
  10, 0x2b, 1, 0x29, 0, 0xfd, 0x0c, ...ZEROS, 0xfd, 0x0c, ...ZEROS, 0xfd, 0x92, 0x02, 0x0b]);
export const relaxedSimdSupported = () => WebAssembly.validate(RELAXED_PROBE);

// Loads and instantiates the engine. options.imports: more import modules,
// e.g. { webgpu: bridge.imports }; their functions can reach the memory
// through the returned EngineModule once this resolves. options.threads:
// CPU threads wanted (caller included); above 1, where shared memory works,
// the default module becomes the threaded build and its workers start
// (threads.mjs); mod.threads says how many run. mtSource: where the
// threaded build is when `source` is not the default (e.g. a page's URL);
// relaxedSource, relaxedMtSource: the same for the relaxed-SIMD builds,
// preferred where relaxedSimdSupported() (a missing one is skipped).
export async function loadEngineModule(source = DEFAULT_WASM_URL,
  { imports = {}, threads = 1, mtSource = null, relaxedSource = null, relaxedMtSource = null } = {}) {
  const isDefault = source === DEFAULT_WASM_URL;
  const mt = threads > 1 && (mtSource || isDefault) && threadsSupported();
  const relaxed = relaxedSimdSupported();
  const tryCompile = (src) => (src ? compile(src).catch(() => null) : null); /* not there: the next choice */
  let module = null;
  if (mt && relaxed) module = await tryCompile(relaxedMtSource ?? (isDefault ? DEFAULT_WASM_RELAXED_MT_URL : null));
  if (mt) module ??= await tryCompile(mtSource ?? DEFAULT_WASM_MT_URL);
  if (relaxed) module ??= await tryCompile(relaxedSource ?? (isDefault ? DEFAULT_WASM_RELAXED_URL : null));
  module ??= await compile(source);
  let memory = null;
  const importObject = missingImports(module, imports);
  for (const [name, funcs] of Object.entries(imports)) importObject[name] = { ...importObject[name], ...funcs };
  importObject[WASI] = wasiImports(module, () => memory);
  let instance;
  if (importsMemory(module)) {
    /* the threaded build: a shared memory, at least the module's minimum */
    const imp = WebAssembly.Module.imports(module).find((i) => i.kind === 'memory');
    for (let pages = 256; ; pages *= 4) {
      memory = sharedMemory(pages);
      importObject[imp.module] = { ...importObject[imp.module], [imp.name]: memory };
      try {
        instance = await WebAssembly.instantiate(module, importObject);
        break;
      } catch (e) {
        if (!(e instanceof WebAssembly.LinkError) || pages >= 16384) throw e;
      }
    }
  } else {
    instance = await WebAssembly.instantiate(module, importObject);
    memory = instance.exports.memory;
  }
  instance.exports._initialize?.();
  const mod = new EngineModule(instance, module, memory);
  if (importsMemory(module) && threads > 1) {
    const workers = await startWorkers(mod, module, threads - 1);
    mod.threads = 1 + workers.count;
    mod.stopThreads = workers.stop;
  }
  return mod;
}
