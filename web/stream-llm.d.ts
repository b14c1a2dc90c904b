// stream-llm.d.ts - types of the public module web/stream-llm.js (served at
// /stream-llm.js): createEngine() and an OpenAI-style engine.

/** Where generation runs. 'auto': WebGPU when the browser has a usable adapter, else the CPU. */
export type Backend = 'auto' | 'webgpu' | 'cpu';

export interface LoadProgress {
  /** 'engine' (starting the backend), 'manifest', 'headers', 'tensors', 'done', 'ready'; 'warning' carries text only;
   *  'reload': the model loading again after a GPU device loss (or reload()), its own phase in `step`. */
  phase: string;
  /** With phase 'reload': the phase of that load. */
  step?: string;
  /** Bytes of the model in place so far, and in all. */
  bytesDone?: number;
  bytesTotal?: number;
  /** bytesDone / bytesTotal. */
  progress?: number;
  /** Of bytesDone: fetched now / read from the browser's cache. */
  networkBytes?: number;
  cacheBytes?: number;
  /** Download speed (bytes/s) and the seconds left (null: unknown). */
  speed?: number;
  eta?: number | null;
  /** True when the manifest came from the cache because the network failed. */
  offline?: boolean;
  /** Per shard: file, bytes, done, state, source ('network' | 'cache'), attempts. */
  shards?: Array<{ file: string; bytes: number; done: number; state: string; source: 'network' | 'cache' | null; attempts: number }>;
  /** A line for people (phases without bytes). */
  text?: string;
  /** Seconds since createEngine() began. */
  elapsed: number;
}

export interface CreateEngineOptions {
  /** A manifest URL (e.g. '/api/models/ID' of `streamllm serve`, or .../manifest.json) or a .gguf URL. */
  model: string;
  onProgress?: (p: LoadProgress) => void;
  /** Run the engine in a module Worker (default true); false: in this thread. */
  worker?: boolean;
  backend?: Backend;
  /** Where engine.wasm is (default: engine/engine.wasm next to this module). */
  wasmUrl?: string | URL;
  /** The threaded build of the engine (default: engine/engine-mt.wasm beside this module). */
  wasmMtUrl?: string | URL;
  /** CPU backend threads, the engine's Worker included (default 1; more run on Workers sharing the
   *  wasm memory where the page is cross-origin isolated, else 1). */
  threads?: number;
  /** KV cache size in tokens (default: min(the model's training context, 4096)). */
  contextLength?: number;
  /** A chat template by llama.cpp's name ('chatml', 'llama3', ...) instead of the model's own. */
  chatTemplate?: string;
  /** false: no persistent cache (the model is fetched on every load). */
  cache?: boolean;
  /** Options of the weight store (weights.mjs openStore), e.g. { dir } in Node. */
  store?: Record<string, unknown>;
  /** Shards downloaded at once (default 4). */
  concurrency?: number;
  /** The model's key in the cache (default: its URL). */
  modelId?: string;
  /** How text travels: 'auto' (ring when crossOriginIsolated), 'ring', 'postMessage'. */
  transport?: 'auto' | 'ring' | 'postMessage';
  /** Options of the WebGPU backend (web/engine/webgpu.mjs). */
  gpu?: Record<string, unknown>;
  /** Aborting unloads the engine. */
  signal?: AbortSignal;
  /** The GPU device was lost ('device-lost'; the request running then fails with a DeviceLostError and
   *  the engine loads the model again by itself, reporting through onProgress with phase 'reload'),
   *  the model is back ('recovered'; on a new device, or on the CPU when no GPU is left and backend
   *  was 'auto'), or it could not be loaded again ('recovery-failed': call reload()). */
  onDeviceLost?: (e: DeviceLostNotice) => void;
}

export interface DeviceLostNotice {
  kind: 'device-lost' | 'recovered' | 'recovery-failed';
  /** A line for people. */
  text: string;
  /** With 'recovery-failed': why. */
  error?: StreamLLMError;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

interface SamplingParams {
  /** Most tokens to generate (default: what the context has room for). */
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  /** 0: greedy. Absent sampling parameters take llama.cpp's defaults (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05). */
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  /** Same seed, same model, same backend: same text. Default: random. */
  seed?: number | bigint | null;
  /** Up to a few strings; generation ends before the first one (it is not returned). */
  stop?: string | string[] | null;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  repetition_penalty?: number | null;
  /** Stops the generation; the result (or stream) ends with finish_reason 'abort'. */
  signal?: AbortSignal;
}

export interface ChatCompletionParams extends SamplingParams {
  messages: ChatMessage[];
  stream?: boolean;
  /** A chat template by name for this request. */
  chat_template?: string;
}

export interface CompletionParams extends SamplingParams {
  prompt: string;
  stream?: boolean;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** cached_tokens: prompt tokens whose KV cache was kept from the previous request. */
  prompt_tokens_details: { cached_tokens: number };
  extra: {
    prefill_tokens: number;
    prefill_tokens_per_s: number | null;
    decode_tokens_per_s: number | null;
    time_to_first_token_s: number | null;
    e2e_latency_s: number;
    backend: 'webgpu' | 'cpu';
  };
}

interface Base {
  id: string;
  created: number;
  model: string;
  /** The backend that produced it. */
  system_fingerprint?: string;
}

export interface ChatCompletion extends Base {
  object: 'chat.completion';
  choices: Array<{ index: 0; message: { role: 'assistant'; content: string }; finish_reason: FinishReason; logprobs: null }>;
  usage: Usage;
}

export interface ChatCompletionChunk extends Base {
  object: 'chat.completion.chunk';
  choices: Array<{ index: 0; delta: { role?: 'assistant'; content?: string }; finish_reason: FinishReason | null; logprobs: null }>;
  /** On the last chunk only. */
  usage?: Usage;
}

export interface Completion extends Base {
  object: 'text_completion';
  choices: Array<{ index: 0; text: string; finish_reason: FinishReason | null; logprobs: null }>;
  /** Non-streamed results and the last chunk of a stream. */
  usage?: Usage;
}

/** A streamed result: iterate with for await; abort() stops it. */
export interface CompletionStream<T> extends AsyncIterable<T> {
  controller: { abort(): void };
  abort(): void;
  /** Tokens generated so far. */
  readonly tokens: number;
}

export interface EngineInfo {
  loaded: boolean;
  backend: 'webgpu' | 'cpu';
  /** 'WebGPU' or 'CPU (WebAssembly), slower'. */
  backendLabel: string;
  /** Why the CPU runs it when 'auto' was asked, else null. */
  fallbackReason: string | null;
  crossOriginIsolated: boolean;
  transport: 'ring' | 'postMessage';
  worker: boolean;
  adapter: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter: boolean } | null;
  features: string[];
  limits: Record<string, number>;
  model: {
    name: string; arch: string; quant: string; n_vocab: number; n_ctx_train: number; n_embd: number; n_layer: number;
    n_head: number; n_head_kv: number; head_dim: number; n_ff: number; params: number; weight_bytes: number;
    bos: number; eos: number; add_bos: boolean; chat_template: string | null; url: string; id: string | null;
  };
  /** The KV cache size in tokens. */
  context: number;
  memory: { wasmBytes: number; weightBytes: number; gpuPlanBytes: number | null; manifestPlan: Record<string, unknown> | null };
  /** The WebGPU memory plan (buffers and sizes), null on the CPU. */
  plan: Record<string, unknown> | null;
  planSummary: string | null;
  loadSeconds: number;
  /** Tokens held in the KV cache now. */
  cachedTokens: number;
}

export interface DeviceInfo {
  webgpu: boolean;
  /** Why there is no WebGPU, else null. */
  reason: string | null;
  adapter: EngineInfo['adapter'];
  features: string[];
  limits: Record<string, number>;
  crossOriginIsolated: boolean;
  sharedArrayBuffer: boolean;
  cores: number | null;
  deviceMemoryGiB: number | null;
  wasmMemoryLimit: number;
}

export interface CachedModel {
  id: string;
  url?: string;
  name?: string;
  bytes: number;
  cachedBytes: number;
  shards: number;
  complete: boolean;
}

export declare class StreamLLMEngine {
  readonly chat: {
    completions: {
      create(p: ChatCompletionParams & { stream: true }): Promise<CompletionStream<ChatCompletionChunk>>;
      create(p: ChatCompletionParams & { stream?: false }): Promise<ChatCompletion>;
    };
  };
  readonly completions: {
    create(p: CompletionParams & { stream: true }): Promise<CompletionStream<Completion>>;
    create(p: CompletionParams & { stream?: false }): Promise<Completion>;
  };
  /** 'webgpu' or 'cpu'. */
  readonly backend: 'webgpu' | 'cpu' | null;
  readonly transportKind: 'ring' | 'postMessage';
  info(): Promise<EngineInfo>;
  /** Forgets the conversation held in the KV cache. */
  resetChat(): Promise<void>;
  /** Loads the model again with its options (weights from the browser's cache): after a GPU device
   *  loss the engine could not recover from by itself (a DeviceLostError says so). */
  reload(): Promise<EngineInfo>;
  /** Stops the generation running now. */
  interruptGenerate(): void;
  /** Frees the model and ends the Worker. */
  unload(): Promise<void>;
}

export declare function createEngine(options: CreateEngineOptions): Promise<StreamLLMEngine>;
export declare function detectDevice(): Promise<DeviceInfo>;
export declare function listCachedModels(storeOptions?: Record<string, unknown>): Promise<CachedModel[]>;
export declare function deleteCachedModel(id: string, storeOptions?: Record<string, unknown>): Promise<void>;
export declare function cacheUsage(storeOptions?: Record<string, unknown>): Promise<{ bytes: number; partialBytes: number; estimate: { usage: number; quota: number } | null }>;

export declare class StreamLLMError extends Error { code?: string }
export declare class DeviceLostError extends StreamLLMError {}
export declare class OutOfMemoryError extends StreamLLMError {}
export declare class QuotaError extends StreamLLMError {}
export declare class NetworkError extends StreamLLMError {}
export declare class IntegrityError extends StreamLLMError {}
export declare class UnsupportedError extends StreamLLMError {}
export declare class InvalidRequestError extends StreamLLMError {}
export declare class ContextLengthError extends InvalidRequestError {}
