// `lora serve` in the SDK: an OpenAI-compatible server with many adapters and continuous batching.
export { createServer, LoraServer, type ServeOptions } from './server.js';
export { Scheduler, type SchedulerOptions, type SchedulerObserver, type GenerationRequest, type GenerationOutcome, type SamplingParams, type FinishReason, type AdapterLease } from './scheduler.js';
export { ModelDecodeEngine, OptDecodeEngine, type DecodeEngine, type EngineOptions, type ForwardRow, type KvCache } from './engine.js';
export { AdapterRegistry } from './adapters.js';
export { ALPACA_CHAT, loadChatTemplate, type ChatTemplate, type ChatMessage } from './chat.js';
export { ServeError, type ServeErrorType } from './errors.js';
export { ServerMetrics } from './metrics.js';
export { TextStream } from './text-stream.js';
export type { Tokenizer } from './generation.js';
