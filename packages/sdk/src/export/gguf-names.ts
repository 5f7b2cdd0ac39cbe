// Hugging Face tensor names of the Llama-shaped families -> llama.cpp's GGUF names
// (gguf-py's tensor_mapping for LLAMA / QWEN2 / QWEN3). This table should be read from the family
// parameter tables (packages/sdk/src/models/params.ts) once the llama/qwen2/qwen3 tables land there;
// until then it is spelled here, for the export only.

const GLOBAL: Record<string, string> = {
  'model.embed_tokens.weight': 'token_embd.weight',
  'model.norm.weight': 'output_norm.weight',
  'lm_head.weight': 'output.weight',
};

const LAYER: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'post_attention_layernorm.weight': 'ffn_norm.weight',
  'self_attn.q_proj.weight': 'attn_q.weight',
  'self_attn.k_proj.weight': 'attn_k.weight',
  'self_attn.v_proj.weight': 'attn_v.weight',
  'self_attn.o_proj.weight': 'attn_output.weight',
  'self_attn.q_proj.bias': 'attn_q.bias',
  'self_attn.k_proj.bias': 'attn_k.bias',
  'self_attn.v_proj.bias': 'attn_v.bias',
  'self_attn.o_proj.bias': 'attn_output.bias',
  'self_attn.q_norm.weight': 'attn_q_norm.weight',
  'self_attn.k_norm.weight': 'attn_k_norm.weight',
  'mlp.gate_proj.weight': 'ffn_gate.weight',
  'mlp.up_proj.weight': 'ffn_up.weight',
  'mlp.down_proj.weight': 'ffn_down.weight',
};

const LAYER_RE = /^model\.layers\.(\d+)\.(.+)$/;

/** The GGUF name of an HF tensor, or undefined for tensors llama.cpp does not use (rotary caches). */
export function ggufTensorName(hfName: string): string | undefined {
  const name = hfName.startsWith('model.') || hfName.startsWith('lm_head') ? hfName : `model.${hfName}`;
  if (GLOBAL[name]) return GLOBAL[name];
  const m = LAYER_RE.exec(name);
  if (m && LAYER[m[2]]) return `blk.${m[1]}.${LAYER[m[2]]}`;
  return undefined;
}

/** The LoRA target module (PEFT's name) a linear's HF name ends in, e.g. q_proj. */
export const LLAMA_LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

/** HF weight name of layer `i`'s linear `target`. */
export function hfLinearName(layer: number, target: string): string {
  const path = ['q_proj', 'k_proj', 'v_proj', 'o_proj'].includes(target) ? `self_attn.${target}` : `mlp.${target}`;
  return `model.layers.${layer}.${path}.weight`;
}

/** Tensors that llama.cpp's LlamaModel conversion permutes for its rotary layout (not qwen2/qwen3). */
export function llamaPermuteHeads(hfName: string, numHeads: number, numKvHeads: number): number | undefined {
  if (/self_attn\.q_proj\.(weight|bias)$/.test(hfName)) return numHeads;
  if (/self_attn\.k_proj\.(weight|bias)$/.test(hfName)) return numKvHeads;
  return undefined;
}

/**
 * HF's Llama rotates halves of each head (rotate_half); ggml's LLAMA rope type rotates adjacent
 * pairs. convert_hf_to_gguf reorders the rows of q/k so that row 2j of a head is HF's row j and row
 * 2j+1 is HF's row j + head_dim/2: reshape(heads, 2, hd/2, cols).swapaxes(1, 2).
 */
export function permuteRows(values: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const out = new Float32Array(values.length);
  const half = rows / heads / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < half; j++) {
      for (let s = 0; s < 2; s++) {
        const src = (h * 2 * half + s * half + j) * cols;
        const dst = (h * 2 * half + j * 2 + s) * cols;
        out.set(values.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}
