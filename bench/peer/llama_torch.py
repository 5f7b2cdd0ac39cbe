"""A plain-PyTorch Llama / Qwen2 / Qwen3 decoder for the peer benchmark, written for this repo.

Follows Hugging Face transformers' eager paths as of v4.51 (`models/llama/modeling_llama.py`,
`models/qwen2/modeling_qwen2.py`, `models/qwen3/modeling_qwen3.py`), re-written by hand because
transformers is not installable here; LoRA is opt_torch.py's PEFT `lora.Linear` port (shared, one
copy). Module and parameter names mirror HF's, so PEFT's target names (q_proj ... down_proj) and
adapter keys come out the same:

  LlamaForCausalLM
    model.embed_tokens                 Embedding(vocab, hidden)
    model.layers.N.input_layernorm     RMSNorm(hidden)
    model.layers.N.self_attn.{q,k,v}_proj   (+ bias for qwen2), o_proj (no bias)
    model.layers.N.self_attn.{q,k}_norm     RMSNorm(head_dim), qwen3 only, before rotary
    model.layers.N.post_attention_layernorm RMSNorm(hidden)
    model.layers.N.mlp.{gate,up,down}_proj  down(silu(gate(x)) * up(x))
    model.norm                         RMSNorm(hidden)
    lm_head                            tied to embed_tokens when tie_word_embeddings

Semantics (HF):
  * RMSNorm: x.float() * rsqrt(mean(x^2) + eps), cast back to the input dtype, times the weight.
  * Rotary (rotate-half): inv_freq = theta^(-2i/d) in float32, cos/sin computed with autocast off,
    then cast to the activations' dtype; q*cos + rotate_half(q)*sin; positions 0..T-1 (no padding).
  * Eager attention: KV heads repeated (repeat_kv), softmax(q k^T * d^-0.5 + causal mask, float32)
    cast back to q's dtype, @ v, o_proj. attention_dropout 0.
  * Loss: HF's ForCausalLMLoss - logits.float(), shift by one, cross-entropy (ignore -100), mean.
  * Init (_init_weights): Linear / Embedding normal(0, initializer_range), biases zero, norms one.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# Shapes of the two benchmark models (their config.json, random weights; layers may be overridden).
SHAPES = {
    # HuggingFaceTB/SmolLM2-360M
    "smollm2-360m": dict(model_type="llama", hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                         num_attention_heads=15, num_key_value_heads=5, head_dim=64, vocab_size=49152,
                         rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
                         max_position_embeddings=8192, attention_bias=False),
    # Qwen/Qwen2.5-0.5B
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, head_dim=64, vocab_size=151936,
                         rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
                         max_position_embeddings=32768, attention_bias=True),
}


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Rotary(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["head_dim"]
        inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, x, position_ids):
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        pos = position_ids[:, None, :].float()
        with torch.autocast(device_type="cpu", enabled=False):
            freqs = (inv @ pos).transpose(1, 2)
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos(), emb.sin()
        return cos.to(x.dtype), sin.to(x.dtype)


# Not shared with hf_llama_port.py: its repeat_interleave rounds bf16 grads otherwise (race loss 10.8349 -> 10.8348).
def repeat_kv(x, n):
    if n == 1:
        return x
    b, kv, s, d = x.shape
    return x[:, :, None, :, :].expand(b, kv, n, s, d).reshape(b, kv * n, s, d)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, self.heads, self.kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.d = cfg["head_dim"]
        self.scaling = self.d ** -0.5
        bias = cfg["attention_bias"]
        self.q_proj = nn.Linear(c, self.heads * self.d, bias=bias)
        self.k_proj = nn.Linear(c, self.kv * self.d, bias=bias)
        self.v_proj = nn.Linear(c, self.kv * self.d, bias=bias)
        self.o_proj = nn.Linear(self.heads * self.d, c, bias=False)
        self.qk_norm = cfg["model_type"] == "qwen3"
        if self.qk_norm:
            self.q_norm = RMSNorm(self.d, cfg["rms_norm_eps"])
            self.k_norm = RMSNorm(self.d, cfg["rms_norm_eps"])

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, -1, self.d)
        k = self.k_proj(x).view(b, s, -1, self.d)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = self.v_proj(x).view(b, s, -1, self.d).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, self.heads // self.kv), repeat_kv(v, self.heads // self.kv)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scaling + mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(w, v).transpose(1, 2).reshape(b, s, -1)
        return self.o_proj(o)


class Mlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, f = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(c, f, bias=False)
        self.up_proj = nn.Linear(c, f, bias=False)
        self.down_proj = nn.Linear(f, c, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = Mlp(cfg)
        self.input_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

    def forward(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.rotary_emb = Rotary(cfg)

    def forward(self, ids):
        b, s = ids.shape
        h = self.embed_tokens(ids)
        pos = torch.arange(s)[None, :].expand(b, s)
        cos, sin = self.rotary_emb(h, pos)
        # HF's 4D causal mask: finfo(dtype).min above the diagonal, in the embeddings' dtype.
        mask = torch.full((s, s), torch.finfo(h.dtype).min, dtype=h.dtype).triu(1)[None, None]
        for layer in self.layers:
            h = layer(h, cos, sin, mask)
        return self.norm(h)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.model = Model(cfg)
        self.lm_head = None if cfg["tie_word_embeddings"] else nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)

    @property
    def lm_head_weight(self):
        return self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def forward(self, ids, labels=None):
        logits = F.linear(self.model(ids), self.lm_head_weight)
        loss = None
        if labels is not None:
            v = logits.shape[-1]
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, v), labels[:, 1:].reshape(-1), ignore_index=-100)
        return logits, loss


def init_weights_(model, std=0.02, generator=None):
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            m.weight.data.normal_(0.0, std, generator=generator)
            if getattr(m, "bias", None) is not None:
                m.bias.data.zero_()
        elif isinstance(m, RMSNorm):
            m.weight.data.fill_(1.0)


def matmul_params(cfg):
    """Weights that take part in matmuls, lm_head counted once (the embedding gather is not a matmul)."""
    c, f, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    return cfg["num_hidden_layers"] * (c * q + 2 * c * kv + q * c + 3 * c * f) + cfg["vocab_size"] * c


def flop_per_token(cfg, n_lora, seq):
    """4·N_base + 6·N_lora + 12·L·s·(heads·head_dim), as the OPT race counts (bench/peer/README.md)."""
    width = cfg["num_attention_heads"] * cfg["head_dim"]
    return 4 * matmul_params(cfg) + 6 * n_lora + 12 * cfg["num_hidden_layers"] * seq * width
