#!/usr/bin/env python3
"""One OPT-350m-shaped LoRA training step the way a transformers + PEFT user writes it, on a GPU
(or the CPU), for the kit's same-shape race (bench/peer/gpu_race.mjs): random init, LoRA on
q/k/v (alpha = 4r, dropout 0.1), AdamW on the LoRA parameters only, HF's causal-LM loss.

With transformers and peft importable (the GPU image has them) it uses OPTForCausalLM(config) and
peft.get_peft_model; without them (Debian's python3-torch here) it falls back to the in-repo port
bench/peer/opt_torch.py (HF's modeling_opt + PEFT's lora.Linear), and says which in "impl".
--dtype bf16: the frozen base is stored in bf16, LoRA parameters in f32, forward + loss under
torch.autocast(bfloat16) - what our side computes (bf16 base, f32 LoRA and accumulation).
Prints one JSON line on stdout; progress goes to stderr.
"""
import argparse
import json
import os
import sys
import time

import torch

LAYOUT_350M = dict(hidden_size=1024, ffn_dim=4096, num_hidden_layers=24, num_attention_heads=16,
                   vocab_size=50272, word_embed_proj_dim=512, do_layer_norm_before=False,
                   max_position_embeddings=2048)


def build_peft(args, layers, targets, alpha):
    import transformers
    import peft
    cfg = transformers.OPTConfig(**{**LAYOUT_350M, "num_hidden_layers": layers}, dropout=0.1,
                                 attention_dropout=0.0, activation_dropout=0.0, init_std=0.02,
                                 pad_token_id=1, bos_token_id=2, eos_token_id=2)
    model = transformers.OPTForCausalLM(cfg)
    model = peft.get_peft_model(model, peft.LoraConfig(r=args.rank, lora_alpha=alpha, lora_dropout=0.1,
                                                        target_modules=targets, bias="none", task_type="CAUSAL_LM"))
    impl = f"transformers {transformers.__version__} + peft {peft.__version__} ({getattr(cfg, '_attn_implementation', 'default')} attention)"

    def forward(ids, mask, labels):
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss
    return model, forward, impl


def build_port(args, layers, targets, alpha):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import opt_torch as ot
    cfg = ot.make_config(**{**LAYOUT_350M, "num_hidden_layers": layers})
    model = ot.OptForCausalLM(cfg)
    ot.init_opt_weights_(model, std=cfg["init_std"], generator=torch.Generator().manual_seed(args.seed))
    ot.add_lora(model, args.rank, alpha, dropout=0.1, target_modules=targets)

    def forward(ids, mask, labels):
        return model(ids, mask, labels)[1]
    return model, forward, "bench/peer/opt_torch.py port (transformers/peft not importable)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda when available)")
    ap.add_argument("--impl", choices=["auto", "peft", "port"], default="auto")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    torch.manual_seed(args.seed)
    targets = ["q_proj", "k_proj", "v_proj"]
    alpha = 4 * args.rank
    t0 = time.perf_counter()
    use_peft = args.impl == "peft"
    if args.impl == "auto":
        try:
            import transformers  # noqa: F401
            import peft  # noqa: F401
            use_peft = True
        except ImportError as e:
            print(f"peft_step: {e}; using the in-repo port", file=sys.stderr)
    model, forward, impl = (build_peft if use_peft else build_port)(args, args.layers, targets, alpha)
    lora_params = [p for n, p in model.named_parameters() if "lora_" in n]
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    if args.dtype == "bf16":
        for n, p in model.named_parameters():
            if "lora_" not in n:
                p.data = p.data.to(torch.bfloat16)
    model.to(device)
    model.train()
    opt = torch.optim.AdamW(lora_params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    init_s = time.perf_counter() - t0

    n_lora = sum(p.numel() for p in lora_params)
    lin = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lora_" not in n]
    # matmul weights: every frozen linear, the tied lm_head counted once as the embedding
    n_matmul = sum(m.weight.numel() for m in lin if m.weight.shape != (LAYOUT_350M["vocab_size"], LAYOUT_350M["word_embed_proj_dim"]))
    n_matmul += LAYOUT_350M["vocab_size"] * LAYOUT_350M["word_embed_proj_dim"]
    flop_per_token = 4 * n_matmul + 6 * n_lora + 12 * args.layers * args.seq * LAYOUT_350M["hidden_size"]

    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(3, LAYOUT_350M["vocab_size"], (args.batch, args.seq), generator=g)
    ids[:, 0] = 2
    ids, mask = ids.to(device), torch.ones_like(ids).to(device)
    labels = ids.clone()
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            loss = forward(ids, mask, labels)
        loss.backward()
        opt.step()
        return loss

    losses, times = [], []
    for i in range(args.warmup + args.steps):
        sync()
        t = time.perf_counter()
        loss = float(step())  # float() waits for the step
        sync()
        dt = time.perf_counter() - t
        if i >= args.warmup:
            times.append(dt)
            losses.append(loss)
        print(f"step {i + 1}/{args.warmup + args.steps} {'(warmup) ' if i < args.warmup else ''}loss {loss:.4f} {dt * 1000:.1f} ms",
              file=sys.stderr, flush=True)
    ms = 1000 * sum(times) / len(times)
    tps = args.batch * args.seq / (ms / 1000)
    out = {
        "bench": "opt_lora_step", "impl": impl, "torch": torch.__version__, "device": device,
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "layout": "350m", "layers": args.layers, "lora": {"r": args.rank, "alpha": alpha, "dropout": 0.1, "targets": targets},
        "batch": args.batch, "seq": args.seq, "dtype": args.dtype, "warmup": args.warmup, "steps": args.steps,
        "ms_per_step": round(ms, 2), "ms_per_step_min": round(1000 * min(times), 2), "tokens_per_s": round(tps, 1),
        "gflop_per_token": round(flop_per_token / 1e9, 4), "gflops": round(flop_per_token * tps / 1e9, 1),
        "peak_device_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "peak_device_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1) if cuda else None,
        "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
        "params": {"trainable": n_lora, "all": sum(p.numel() for p in model.parameters())}, "init_s": round(init_s, 2),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
