// Moved: OPTForCausalLM lives in its family file (models/opt.ts); this path stays for code written
// before model families.
export { OptForCausalLM } from '../models/opt.js';
export type { LoadOptions, LoadProgressEvent, ModelBatch, StepOptions, StepResult } from '../models/causal-lm.js';
