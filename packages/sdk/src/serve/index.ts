// `lora serve` in the SDK: an OpenAI-compatible server with many adapters and continuous batching.
export { createServer, LoraServer, type ModelSource, type ServeOptions } from './server.js';
export type { ModelBackend, ModelInfo, BackendRequest, BackendOutcome, RequestHandle, ServedAdapters, BatchCounters, StepObserver } from './backend.js';
export { WorkerBackend, type WorkerBackendOptions } from './worker-backend.js';
export { InThreadBackend, type InThreadOptions } from './in-thread.js';
export type { WorkerInit, WorkerLoadOptions } from './worker-protocol.js';
export { Scheduler, type SchedulerOptions, type SchedulerObserver, type GenerationRequest, type GenerationOutcome, type SamplingParams, type FinishReason, type AdapterLease } from './scheduler.js';
export { ModelDecodeEngine, OptDecodeEngine, type DecodeEngine, type EngineOptions, type ForwardRow, type KvCache } from './engine.js';
export { AdapterRegistry } from './adapters.js';
export { ALPACA_CHAT, loadChatTemplate, type ChatTemplate, type ChatMessage } from './chat.js';
export { ServeError, type ServeErrorType } from './errors.js';
export { ServerMetrics } from './metrics.js';
export { TextStream } from './text-stream.js';
export type { Tokenizer } from './generation.js';
