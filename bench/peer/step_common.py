"""The harness both CPU peer steps share (opt_lora_step.py, llama_lora_step.py): the common command
line, LoRA-only AdamW, the timed loop, the same-run matmul peak, RSS and the JSON line's shared
fields. Each step script keeps only its model: building it, its inputs and its FLOP count.
"""

import os
import platform
import sys
import time

import torch

import opt_torch as ot


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


def add_step_args(ap, rank, alpha_per_rank, dropout, targets, seq, layers_help):
    """The options both races pass (race.mjs / llama-race.mjs), with each model's defaults."""
    ap.add_argument("--layers", type=int, default=None, help=f"override num_hidden_layers ({layers_help})")
    ap.add_argument("--rank", type=int, default=rank)
    ap.add_argument("--alpha", type=float, default=None, help=f"lora_alpha (default {alpha_per_rank:g} * rank)")
    ap.add_argument("--dropout", type=float, default=dropout, help="LoRA dropout")
    ap.add_argument("--targets", default=targets)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=seq)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="bf16")


def add_run_args(ap, steps):
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-peak", action="store_true", help="skip the 2048^3 matmul peak measurement")


def seed_run(args, alpha_per_rank):
    """Threads and the global seed (LoRA init, dropout); returns lora_alpha and the target list."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    alpha = args.alpha if args.alpha is not None else alpha_per_rank * args.rank
    return alpha, [t for t in args.targets.split(",") if t]


def lora_adamw(model, wrapped, lr):
    """LoRA parameters in f32 and trainable (the base frozen), train mode, AdamW with HF Trainer's
    defaults (betas 0.9/0.999, eps 1e-8, weight_decay 0) on them only."""
    lora_params = list(ot.adapter_state(wrapped).values())
    for p in lora_params:
        p.data = p.data.float()
        p.requires_grad_(True)
    model.train()
    opt = torch.optim.AdamW(lora_params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    return lora_params, opt


def timed_steps(model, opt, inputs, args):
    """args.warmup untimed + args.steps timed steps on one batch (model(*inputs) -> (logits, loss)),
    forward + loss under torch.autocast("cpu", bfloat16) when --dtype bf16."""
    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            _, loss = model(*inputs)
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
    return losses, times


def environment(bench):
    return {
        "bench": bench,
        "impl": "pytorch",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "blas": blas_lib(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }


def measurements(args, losses, times, flop_per_token, n_lora, n_all, init_s):
    """The figures after the run: time, throughput, FLOP rate against the same-run matmul peak,
    losses, RSS, parameter counts."""
    peak = None
    if not args.no_peak:
        peak = matmul_peak_gflops(torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    tokens = args.batch * args.seq
    ms = 1000.0 * sum(times) / len(times)
    tps = tokens / (ms / 1000.0)
    return {
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
