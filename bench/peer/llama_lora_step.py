#!/usr/bin/python3
"""PyTorch peer benchmark: Llama / Qwen2 + PEFT-semantics LoRA training steps on CPU.

    /usr/bin/python3 bench/peer/llama_lora_step.py --shape smollm2-360m --rank 16 --dtype bf16 \
        --batch 4 --seq 512 --threads 2 --warmup 1 --steps 2

Prints ONE JSON line (fields as opt_lora_step.py's; see bench/peer/README.md). The model is
llama_torch.py (a port of transformers' modeling_llama / modeling_qwen2 eager path), randomly
initialised (HF's init, seeded); LoRA from opt_torch.py (PEFT lora.Linear: A kaiming-uniform,
B zeros, scale alpha/r, dropout on the LoRA input) on --targets; base frozen; AdamW on the LoRA
parameters only. --dtype bf16 wraps forward + loss in torch.autocast("cpu", bfloat16) with float32
weights, as the OPT race does; --base-dtype bf16 instead stores the frozen base in bfloat16 (what
from_pretrained(torch_dtype=torch.bfloat16) gives), LoRA parameters staying float32. The harness
(loop, peak, RSS, JSON) is step_common.py's, shared with opt_lora_step.py.
"""

import argparse
import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import llama_torch as lt  # noqa: E402
import opt_torch as ot  # noqa: E402
import step_common as sc  # noqa: E402

ALL_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(lt.SHAPES), default="smollm2-360m")
    sc.add_step_args(ap, rank=16, alpha_per_rank=2, dropout=0.05, targets=ALL_TARGETS, seq=512,
                     layers_help="same per-layer shape")
    ap.add_argument("--base-dtype", choices=["f32", "bf16"], default="f32")
    sc.add_run_args(ap, steps=2)
    args = ap.parse_args()

    alpha, targets = sc.seed_run(args, alpha_per_rank=2.0)
    cfg = dict(lt.SHAPES[args.shape])
    if args.layers is not None:
        cfg["num_hidden_layers"] = args.layers

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    model = lt.LlamaForCausalLM(cfg)
    lt.init_weights_(model, generator=g)
    if args.base_dtype == "bf16":
        model.to(torch.bfloat16)
    wrapped = ot.add_lora(model, args.rank, alpha, dropout=args.dropout, target_modules=targets)
    lora_params, opt = sc.lora_adamw(model, wrapped, args.lr)
    init_s = time.perf_counter() - t0

    n_lora = sum(p.numel() for p in lora_params)
    n_all = sum(p.numel() for p in model.parameters())
    flop_per_token = lt.flop_per_token(cfg, n_lora, args.seq)

    ids = torch.randint(3, cfg["vocab_size"], (args.batch, args.seq), generator=g)
    ids[:, 0] = 1
    losses, times = sc.timed_steps(model, opt, (ids, ids.clone()), args)

    result = sc.environment("llama_lora_step")
    result.update({
        "shape": args.shape,
        "config": cfg,
        "lora": {"r": args.rank, "alpha": alpha, "dropout": args.dropout, "targets": targets},
        "batch": args.batch, "seq": args.seq, "dtype": args.dtype, "base_dtype": args.base_dtype,
    })
    result.update(sc.measurements(args, losses, times, flop_per_token, n_lora, n_all, init_s))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
