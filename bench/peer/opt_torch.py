"""A plain-PyTorch OPT decoder and PEFT-semantics LoRA, written for this repo.

Shared by scripts/fixtures/make_opt_fixtures.py (golden parity fixtures) and
bench/peer/opt_lora_step.py (the PyTorch peer benchmark). One copy only.

It follows Hugging Face transformers' `models/opt/modeling_opt.py` (eager attention
path) and PEFT's `tuners/lora/layer.py` (`Linear`), re-written here by hand because
neither package is installed on these machines. Module and parameter names mirror
HF's, so `state_dict()` keys are HF's keys and adapter keys are PEFT's keys:

  OptForCausalLM
    model.decoder.embed_tokens        Embedding(vocab, word_embed_proj_dim)
    model.decoder.embed_positions     Embedding(max_pos + 2, hidden)   (offset 2)
    model.decoder.project_in          Linear(word_embed_proj_dim -> hidden, no bias) if dims differ
    model.decoder.project_out         Linear(hidden -> word_embed_proj_dim, no bias) if dims differ
    model.decoder.final_layer_norm    LayerNorm(hidden)  only when do_layer_norm_before
    model.decoder.layers.N.self_attn.{q,k,v,out}_proj, self_attn_layer_norm, fc1, fc2, final_layer_norm
    lm_head                           tied to embed_tokens (no parameter of its own here)

Semantics (HF OPT):
  * positions = cumsum(attention_mask, 1) * attention_mask - 1, then + 2 (offset); so padded
    positions look up row 1 of embed_positions, the first real token row 2.
  * project_in is applied to the token embeddings BEFORE the position embeddings are added.
  * attention mask: additive, finfo(dtype).min where key j > query i (causal) or key j is padding
    (attention_mask[b, j] == 0); padded query rows are NOT masked out (they still attend to the
    real keys before them), exactly like HF.
  * q = q_proj(x) * head_dim**-0.5 (scaling applied to q_proj's output, bias included);
    softmax in float32 (or higher if the model is float64), then @ v, out_proj.
  * pre-LN (do_layer_norm_before=True): x + attn(LN(x)); x + fc2(relu(fc1(LN(x)))); final LN.
    post-LN (False): LN(x + attn(x)); LN(x + fc2(relu(fc1(x)))); no final LN.
  * LayerNorm eps 1e-5, ReLU, dropout (config.dropout) after out_proj and after fc2 in training.
  * loss: cross-entropy of logits[:, :-1] against labels[:, 1:], ignore_index -100, mean over the
    counted tokens (HF's ForCausalLMLoss with num_items_in_batch=None), computed in float32+.

LoRA (PEFT `Linear`): y = base(x) + lora_B(lora_A(dropout(x))) * scaling,
  scaling = alpha / r (alpha / sqrt(r) with rsLoRA); lora_A: Linear(in, r, bias=False),
  lora_B: Linear(r, out, bias=False); default init A ~ kaiming_uniform(a=sqrt(5)), B = 0.
  Adapter key = "base_model.model." + module path + ".lora_A.weight" / ".lora_B.weight".
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------- config

OPT_CONFIG_DEFAULTS = {
    "_remove_final_layer_norm": False,
    "activation_dropout": 0.0,
    "activation_function": "relu",
    "architectures": ["OPTForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 2,
    "do_layer_norm_before": True,
    "dropout": 0.1,
    "enable_bias": True,
    "eos_token_id": 2,
    "ffn_dim": 3072,
    "hidden_size": 768,
    "init_std": 0.02,
    "layer_norm_elementwise_affine": True,
    "layerdrop": 0.0,
    "max_position_embeddings": 2048,
    "model_type": "opt",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "prefix": "</s>",
    "torch_dtype": "float32",
    "use_cache": True,
    "vocab_size": 50272,
    "word_embed_proj_dim": 768,
}

# The two real layouts the project cares about (facebook/opt-125m and facebook/opt-350m).
LAYOUTS = {
    "125m": dict(hidden_size=768, ffn_dim=3072, num_hidden_layers=12, num_attention_heads=12,
                 vocab_size=50272, word_embed_proj_dim=768, do_layer_norm_before=True,
                 max_position_embeddings=2048),
    "350m": dict(hidden_size=1024, ffn_dim=4096, num_hidden_layers=24, num_attention_heads=16,
                 vocab_size=50272, word_embed_proj_dim=512, do_layer_norm_before=False,
                 max_position_embeddings=2048),
}


def make_config(**overrides):
    cfg = dict(OPT_CONFIG_DEFAULTS)
    cfg.update(overrides)
    return cfg


# --------------------------------------------------------------------------- model

class OptAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_dim = cfg["hidden_size"]
        self.num_heads = cfg["num_attention_heads"]
        self.head_dim = self.embed_dim // self.num_heads
        assert self.head_dim * self.num_heads == self.embed_dim
        self.scaling = self.head_dim ** -0.5
        self.attn_dropout = cfg["attention_dropout"]
        bias = cfg["enable_bias"]
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=bias)
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=bias)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=bias)

    def _heads(self, t, b, s):
        return t.view(b, s, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x, mask4d):
        b, s, _ = x.shape
        q = self._heads(self.q_proj(x) * self.scaling, b, s)
        k = self._heads(self.k_proj(x), b, s)
        v = self._heads(self.v_proj(x), b, s)
        scores = torch.matmul(q, k.transpose(-1, -2))
        scores = scores + mask4d
        # HF: softmax(dim=-1, dtype=float32).to(q.dtype); keep float64 when the model is float64.
        soft_dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
        probs = F.softmax(scores, dim=-1, dtype=soft_dtype).to(q.dtype)
        probs = F.dropout(probs, p=self.attn_dropout, training=self.training)
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, self.embed_dim)
        return self.out_proj(ctx)


class OptDecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.self_attn = OptAttention(cfg)
        self.pre_ln = cfg["do_layer_norm_before"]
        self.dropout = cfg["dropout"]
        self.self_attn_layer_norm = nn.LayerNorm(d, elementwise_affine=cfg["layer_norm_elementwise_affine"])
        self.fc1 = nn.Linear(d, cfg["ffn_dim"], bias=cfg["enable_bias"])
        self.fc2 = nn.Linear(cfg["ffn_dim"], d, bias=cfg["enable_bias"])
        self.final_layer_norm = nn.LayerNorm(d, elementwise_affine=cfg["layer_norm_elementwise_affine"])

    def forward(self, h, mask4d):
        residual = h
        if self.pre_ln:
            h = self.self_attn_layer_norm(h)
        h = self.self_attn(h, mask4d)
        h = F.dropout(h, p=self.dropout, training=self.training)
        h = residual + h
        if not self.pre_ln:
            h = self.self_attn_layer_norm(h)

        residual = h
        if self.pre_ln:
            h = self.final_layer_norm(h)
        h = F.relu(self.fc1(h))
        h = self.fc2(h)
        h = F.dropout(h, p=self.dropout, training=self.training)
        h = residual + h
        if not self.pre_ln:
            h = self.final_layer_norm(h)
        return h


class OptDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, p = cfg["hidden_size"], cfg["word_embed_proj_dim"]
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], p, cfg["pad_token_id"])
        self.embed_positions = nn.Embedding(cfg["max_position_embeddings"] + 2, d)
        self.project_out = nn.Linear(d, p, bias=False) if p != d else None
        self.project_in = nn.Linear(p, d, bias=False) if p != d else None
        if cfg["do_layer_norm_before"] and not cfg["_remove_final_layer_norm"]:
            self.final_layer_norm = nn.LayerNorm(d, elementwise_affine=cfg["layer_norm_elementwise_affine"])
        else:
            self.final_layer_norm = None
        self.layers = nn.ModuleList([OptDecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])

    def forward(self, input_ids, attention_mask=None):
        b, s = input_ids.shape
        x = self.embed_tokens(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones(b, s, dtype=torch.long, device=input_ids.device)
        mask4d = build_attention_mask(attention_mask, x.dtype)
        positions = position_ids_from_mask(attention_mask)
        pos = self.embed_positions(positions + 2)
        if self.project_in is not None:
            x = self.project_in(x)
        h = x + pos
        for layer in self.layers:
            h = layer(h, mask4d)
        if self.final_layer_norm is not None:
            h = self.final_layer_norm(h)
        if self.project_out is not None:
            h = self.project_out(h)
        return h


class OptModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.decoder = OptDecoder(cfg)


class OptForCausalLM(nn.Module):
    """lm_head is tied to model.decoder.embed_tokens.weight (no separate parameter)."""

    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.model = OptModel(cfg)

    @property
    def lm_head_weight(self):
        return self.model.decoder.embed_tokens.weight

    def forward(self, input_ids, attention_mask=None, labels=None):
        h = self.model.decoder(input_ids, attention_mask)
        logits = F.linear(h, self.lm_head_weight)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return logits, loss


def position_ids_from_mask(attention_mask):
    """HF OPT: (cumsum(mask) * mask - 1); the caller adds the offset 2."""
    m = attention_mask.long()
    return torch.cumsum(m, dim=1) * m - 1


def build_attention_mask(attention_mask, dtype):
    """HF's 4D additive mask [B, 1, T, T]: finfo(dtype).min where masked, 0 elsewhere."""
    b, s = attention_mask.shape
    neg = torch.finfo(dtype).min
    idx = torch.arange(s, device=attention_mask.device)
    causal_block = idx[None, :] > idx[:, None]  # key j after query i
    pad_block = (attention_mask == 0)[:, None, None, :]
    blocked = causal_block[None, None, :, :] | pad_block
    mask = torch.zeros(b, 1, s, s, dtype=dtype, device=attention_mask.device)
    return mask.masked_fill(blocked, neg)


def causal_lm_loss(logits, labels):
    v = logits.shape[-1]
    shift_logits = logits[:, :-1, :].reshape(-1, v)
    if shift_logits.dtype not in (torch.float32, torch.float64):
        shift_logits = shift_logits.float()
    shift_labels = labels[:, 1:].reshape(-1)
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="mean")


# --------------------------------------------------------------------------- LoRA

class LoraLinear(nn.Module):
    """PEFT `lora.Linear` semantics (single adapter, no DoRA, fan_in_fan_out=False)."""

    def __init__(self, base_layer, r, alpha, dropout=0.0, use_rslora=False):
        super().__init__()
        self.base_layer = base_layer
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.r = r
        self.lora_alpha = alpha
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        self.lora_dropout = nn.Dropout(p=dropout) if dropout > 0.0 else nn.Identity()
        self.lora_A = nn.Linear(self.in_features, r, bias=False,
                                dtype=base_layer.weight.dtype, device=base_layer.weight.device)
        self.lora_B = nn.Linear(r, self.out_features, bias=False,
                                dtype=base_layer.weight.dtype, device=base_layer.weight.device)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        result = self.base_layer(x)
        # PEFT casts x to lora_A's dtype (a no-op here, and under autocast linear recasts anyway).
        x = x.to(self.lora_A.weight.dtype)
        return result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling


def add_lora(model, r, alpha, dropout=0.0, target_modules=("q_proj", "k_proj", "v_proj"), use_rslora=False):
    """Freeze every base parameter and wrap each targeted nn.Linear in LoraLinear.

    Returns {peft_key_prefix: LoraLinear}, e.g. prefix
    'base_model.model.model.decoder.layers.0.self_attn.q_proj'.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    targets = set(target_modules)
    wrapped = {}
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                lora = LoraLinear(child, r, alpha, dropout, use_rslora)
                setattr(module, child_name, lora)
                full = f"{name}.{child_name}" if name else child_name
                wrapped["base_model.model." + full] = lora
    return wrapped


def adapter_state(wrapped):
    """PEFT adapter_model.safetensors keys -> parameters."""
    out = {}
    for prefix in sorted(wrapped, key=_natural_key):
        lora = wrapped[prefix]
        out[prefix + ".lora_A.weight"] = lora.lora_A.weight
        out[prefix + ".lora_B.weight"] = lora.lora_B.weight
    return out


def _natural_key(s):
    import re
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def base_state_dict(model):
    """HF key names for the base weights (LoRA wrappers unwrapped), lm_head excluded."""
    out = {}
    for k, v in model.state_dict(keep_vars=True).items():
        if ".lora_A." in k or ".lora_B." in k:
            continue
        out[k.replace(".base_layer.", ".")] = v
    return out


def init_opt_weights_(model, std=0.02, generator=None):
    """HF-style init (normal(0, std) linears/embeddings, zero bias, LN=1/0, pad row zero)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight.data.normal_(0.0, std, generator=generator)
            if m.bias is not None:
                m.bias.data.zero_()
        elif isinstance(m, nn.Embedding):
            m.weight.data.normal_(0.0, std, generator=generator)
            if m.padding_idx is not None:
                m.weight.data[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            m.weight.data.fill_(1.0)
            m.bias.data.zero_()
