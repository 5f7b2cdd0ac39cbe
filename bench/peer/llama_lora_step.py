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
from_pretrained(torch_dtype=torch.bfloat16) gives), LoRA parameters staying float32.
"""

import argparse
import json
import os
import platform
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import llama_torch as lt  # noqa: E402
import opt_torch as ot  # noqa: E402
from opt_lora_step import blas_lib, cpu_name, matmul_peak_gflops, vm_kb  # noqa: E402

ALL_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(lt.SHAPES), default="smollm2-360m")
    ap.add_argument("--layers", type=int, default=None, help="override num_hidden_layers (same per-layer shape)")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=None, help="lora_alpha (default 2 * rank)")
    ap.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout")
    ap.add_argument("--targets", default=ALL_TARGETS)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="bf16")
    ap.add_argument("--base-dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-peak", action="store_true", help="skip the 2048^3 matmul peak measurement")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    alpha = args.alpha if args.alpha is not None else 2.0 * args.rank
    cfg = dict(lt.SHAPES[args.shape])
    if args.layers is not None:
        cfg["num_hidden_layers"] = args.layers
    targets = [t for t in args.targets.split(",") if t]

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    model = lt.LlamaForCausalLM(cfg)
    lt.init_weights_(model, generator=g)
    if args.base_dtype == "bf16":
        model.to(torch.bfloat16)
    wrapped = ot.add_lora(model, args.rank, alpha, dropout=args.dropout, target_modules=targets)
    lora_params = list(ot.adapter_state(wrapped).values())
    for p in lora_params:
        p.data = p.data.float()
        p.requires_grad_(True)
    model.train()
    opt = torch.optim.AdamW(lora_params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    init_s = time.perf_counter() - t0

    n_lora = sum(p.numel() for p in lora_params)
    n_all = sum(p.numel() for p in model.parameters())
    flop_per_token = lt.flop_per_token(cfg, n_lora, args.seq)

    ids = torch.randint(3, cfg["vocab_size"], (args.batch, args.seq), generator=g)
    ids[:, 0] = 1
    labels = ids.clone()

    def step():
        opt.zero_grad(set_to_none=True)
        if args.dtype == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                _, loss = model(ids, labels)
        else:
            _, loss = model(ids, labels)
        loss.backward()
        opt.step()
        return float(loss)

    losses, times = [], []
    for i in range(args.warmup + args.steps):
        t = time.perf_counter()
        loss = step()
        dt = time.perf_counter() - t
        if i >= args.warmup:
            times.append(dt)
            losses.append(loss)
        print(f"step {i + 1}/{args.warmup + args.steps} {'(warmup) ' if i < args.warmup else ''}"
              f"loss {loss:.4f} {dt * 1000:.0f} ms", file=sys.stderr, flush=True)

    peak = None
    if not args.no_peak:
        peak = matmul_peak_gflops(torch.bfloat16 if args.dtype == "bf16" else torch.float32)

    tokens = args.batch * args.seq
    ms = 1000.0 * sum(times) / len(times)
    tps = tokens / (ms / 1000.0)
    result = {
        "bench": "llama_lora_step",
        "impl": "pytorch",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "blas": blas_lib(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "shape": args.shape,
        "config": cfg,
        "lora": {"r": args.rank, "alpha": alpha, "dropout": args.dropout, "targets": targets},
        "batch": args.batch, "seq": args.seq, "dtype": args.dtype, "base_dtype": args.base_dtype,
        "optimizer": {"name": "AdamW", "lr": args.lr},
        "warmup": args.warmup, "steps": args.steps,
        "ms_per_step": round(ms, 1),
        "ms_per_step_min": round(1000.0 * min(times), 1),
        "tokens_per_s": round(tps, 1),
        "gflop_per_token": round(flop_per_token / 1e9, 4),
        "gflops": round(flop_per_token * tps / 1e9, 1),
        "matmul_peak_gflops": round(peak, 1) if peak else None,
        "pct_of_matmul_peak": round(100.0 * flop_per_token * tps / 1e9 / peak, 1) if peak else None,
        "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
        "peak_rss_mb": round(vm_kb("VmHWM") / 1024.0, 1),
        "rss_mb": round(vm_kb("VmRSS") / 1024.0, 1),
        "params": {"trainable": n_lora, "all": n_all},
        "init_s": round(init_s, 2),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
