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
user would enable bf16 on CPU; weights stay float32.
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

import opt_torch as ot  # noqa: E402


def vm_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def blas_lib():
    """Which libblas.so.3 Debian's torch (BLAS_INFO=generic) will load."""
    try:
        return os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    except OSError:
        return None


def matmul_peak_gflops(dtype, n=2048, reps=3):
    """torch's own n^3 matmul throughput in the step's compute dtype, measured in this run."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layout", choices=sorted(ot.LAYOUTS), default="350m")
    ap.add_argument("--layers", type=int, default=None, help="override num_hidden_layers (quick runs)")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=None, help="lora_alpha (default 4 * rank)")
    ap.add_argument("--dropout", type=float, default=0.1, help="LoRA dropout")
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-peak", action="store_true", help="skip the 2048^3 matmul peak measurement")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    alpha = args.alpha if args.alpha is not None else 4.0 * args.rank
    overrides = dict(ot.LAYOUTS[args.layout])
    if args.layers is not None:
        overrides["num_hidden_layers"] = args.layers
    cfg = ot.make_config(**overrides)
    targets = [t for t in args.targets.split(",") if t]

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    model = ot.OptForCausalLM(cfg)
    ot.init_opt_weights_(model, std=cfg["init_std"], generator=g)
    wrapped = ot.add_lora(model, args.rank, alpha, dropout=args.dropout, target_modules=targets)
    lora_params = list(ot.adapter_state(wrapped).values())
    for p in lora_params:
        p.requires_grad_(True)
    model.train()
    opt = torch.optim.AdamW(lora_params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    init_s = time.perf_counter() - t0

    n_lora = sum(p.numel() for p in lora_params)
    n_all = sum(p.numel() for p in model.parameters())
    # parameters that take part in matmuls (lm_head is embed_tokens, tied)
    n_matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)) - n_lora
    n_matmul += model.model.decoder.embed_tokens.weight.numel()
    L, d, s = cfg["num_hidden_layers"], cfg["hidden_size"], args.seq
    flop_per_token = 4 * n_matmul + 6 * n_lora + 12 * L * s * d

    vocab = cfg["vocab_size"]
    ids = torch.randint(3, vocab, (args.batch, args.seq), generator=g)
    ids[:, 0] = 2
    mask = torch.ones_like(ids)
    labels = ids.clone()

    def step():
        opt.zero_grad(set_to_none=True)
        if args.dtype == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                _, loss = model(ids, mask, labels)
        else:
            _, loss = model(ids, mask, labels)
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
        "bench": "opt_lora_step",
        "impl": "pytorch",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "blas": blas_lib(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "layout": args.layout,
        "config": {k: cfg[k] for k in ("hidden_size", "ffn_dim", "num_hidden_layers", "num_attention_heads",
                                       "vocab_size", "word_embed_proj_dim", "do_layer_norm_before",
                                       "dropout")},
        "lora": {"r": args.rank, "alpha": alpha, "dropout": args.dropout, "targets": targets},
        "batch": args.batch, "seq": args.seq, "dtype": args.dtype,
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
