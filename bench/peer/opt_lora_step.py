#!/usr/bin/python3
"""PyTorch peer benchmark: OPT + PEFT-semantics LoRA training steps on CPU.

    /usr/bin/python3 bench/peer/opt_lora_step.py --layout 350m --rank 8 --dtype bf16 \
        --batch 4 --seq 256 --threads 2 --warmup 1 --steps 3

Prints ONE JSON line (see bench/peer/README.md for the fields). The model is the hand-written
HF-OPT port in opt_torch.py (same code that makes the parity fixtures), randomly initialised
(seeded, HF's init: normal(0, 0.02)); LoRA as PEFT (A kaiming-uniform, B zeros, scale alpha/r,
dropout on the LoRA input) on --targets; the base is frozen; AdamW (torch.optim.AdamW, HF
Trainer defaults: betas 0.9/0.999, eps 1e-8, weight_decay 0) on the LoRA parameters only.
The model runs in train mode, so OPT's own dropout (config.dropout = 0.1) is active too, as in
a HF Trainer run. --dtype bf16 wraps forward + loss in torch.autocast("cpu", bfloat16), the way a
user would enable bf16 on CPU; weights stay float32. The harness (loop, peak, RSS, JSON) is
step_common.py's, shared with llama_lora_step.py.
"""

import argparse
import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import opt_torch as ot  # noqa: E402
import step_common as sc  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layout", choices=sorted(ot.LAYOUTS), default="350m")
    sc.add_step_args(ap, rank=8, alpha_per_rank=4, dropout=0.1, targets="q_proj,k_proj,v_proj", seq=256,
                     layers_help="quick runs")
    sc.add_run_args(ap, steps=3)
    args = ap.parse_args()

    alpha, targets = sc.seed_run(args, alpha_per_rank=4.0)
    overrides = dict(ot.LAYOUTS[args.layout])
    if args.layers is not None:
        overrides["num_hidden_layers"] = args.layers
    cfg = ot.make_config(**overrides)

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    model = ot.OptForCausalLM(cfg)
    ot.init_opt_weights_(model, std=cfg["init_std"], generator=g)
    wrapped = ot.add_lora(model, args.rank, alpha, dropout=args.dropout, target_modules=targets)
    lora_params, opt = sc.lora_adamw(model, wrapped, args.lr)
    init_s = time.perf_counter() - t0

    n_lora = sum(p.numel() for p in lora_params)
    n_all = sum(p.numel() for p in model.parameters())
    # parameters that take part in matmuls (lm_head is embed_tokens, tied)
    n_matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)) - n_lora
    n_matmul += model.model.decoder.embed_tokens.weight.numel()
    L, d, s = cfg["num_hidden_layers"], cfg["hidden_size"], args.seq
    flop_per_token = 4 * n_matmul + 6 * n_lora + 12 * L * s * d

    ids = torch.randint(3, cfg["vocab_size"], (args.batch, args.seq), generator=g)
    ids[:, 0] = 2
    losses, times = sc.timed_steps(model, opt, (ids, torch.ones_like(ids), ids.clone()), args)

    result = sc.environment("opt_lora_step")
    result.update({
        "layout": args.layout,
        "config": {k: cfg[k] for k in ("hidden_size", "ffn_dim", "num_hidden_layers", "num_attention_heads",
                                       "vocab_size", "word_embed_proj_dim", "do_layer_norm_before",
                                       "dropout")},
        "lora": {"r": args.rank, "alpha": alpha, "dropout": args.dropout, "targets": targets},
        "batch": args.batch, "seq": args.seq, "dtype": args.dtype,
    })
    result.update(sc.measurements(args, losses, times, flop_per_token, n_lora, n_all, init_s))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
