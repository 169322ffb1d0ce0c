"""Do the fast paths train the same model? Loss after N steps: the reference ops eagerly, the Triton ops
eagerly, and the Triton ops with each block compiled, from one initialisation on one batch stream.

    python benchmarks/proxy_numerics.py                   # on a CUDA GPU: docs/benchmarks/proxy_numerics.md
    python benchmarks/proxy_numerics.py --families mamba2 --steps 50
    python benchmarks/proxy_numerics.py --smoke           # tiny, CPU (reference and aot_eager), nothing written

Each family is `proxy_throughput.py`'s, scaled to `--params`, trained with AdamW (lr 1e-3) under bf16
autocast on the GPU on random tokens of the corpus's vocabulary (the losses fall as the models learn the
unigram statistics, which is enough to compare paths). The target (issue 12): every path's loss after 50
steps within 1% of the reference's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from _report import command, families, machine, write
from proxy_evidence import arch
from proxy_throughput import FAMILIES, next_token_loss

from workers.models import build_model, compile_blocks
from workers.train import autocast


def train(cfg, path: str, steps: int, batch: int, length: int, dev: torch.device, backend: str) -> float:
    """The loss at the last of `steps` AdamW steps along `path`: reference, triton or compiled."""
    # the Triton kernels on the GPU; on the CPU (--smoke) every path runs the reference ops
    os.environ["KERNELS_BACKEND"] = "triton" if path != "reference" and dev.type == "cuda" else "reference"
    try:
        torch.manual_seed(0)
        model = build_model(cfg).to(dev)
        if path == "compiled":
            torch._dynamo.reset()
            compile_blocks(model, backend=backend)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(1)
        for _ in range(steps):
            # a skewed distribution over tokens, so that there is something to learn in a few steps
            idx = (torch.randint(0, 256, (batch, length + 1), generator=gen) ** 2 // 256).to(dev)
            with autocast(dev):
                loss = next_token_loss(model, idx)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return loss.item()
    finally:
        os.environ.pop("KERNELS_BACKEND", None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="attention,mamba2,mlstm,hybrid 1:7,gated deltanet,mamba1")
    ap.add_argument("--params", type=float, default=2.5e7)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--backend", default="inductor", help="torch.compile backend of the compiled path")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/proxy_numerics.md"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, nothing written")
    args = ap.parse_args()
    chosen = families(args.families, FAMILIES)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    paths = ["reference", "triton", "compiled"] if dev.type == "cuda" else ["reference", "compiled"]
    if args.smoke:
        args.params, args.steps, args.batch, args.length, args.backend = 2e5, 3, 2, 32, "aot_eager"
        chosen = chosen[:2]
    lines = [
        "# Do the fast paths train the same model?",
        "",
        f"`{command()}` on {machine(gpu=dev.type == 'cuda')}. ~{args.params / 1e6:g}M parameters, "
        f"B{args.batch} T{args.length}, AdamW lr 1e-3, {'bf16 autocast' if dev.type == 'cuda' else 'fp32'}; "
        f"loss at step {args.steps} from one initialisation and one batch stream. *reference*: the ops in plain "
        "PyTorch (`KERNELS_BACKEND=reference`); *triton*: the Triton kernels eagerly; *compiled*: the Triton "
        f"kernels with each block compiled ({args.backend}). Target: within 1% of the reference.",
        "",
        "| family | " + " | ".join(paths) + " | " + " | ".join(f"{p} ÷ reference − 1" for p in paths[1:]) + " |",
        "|---|" + "---:|" * (2 * len(paths) - 1),
    ]
    for name in chosen:
        cfg = arch(FAMILIES[name], args.params)
        losses = {p: train(cfg, p, args.steps, args.batch, args.length, dev, args.backend) for p in paths}
        ref = losses["reference"]
        row = (f"| {name} | " + " | ".join(f"{losses[p]:.4f}" for p in paths) + " | "
               + " | ".join(f"{losses[p] / ref - 1:+.2%}" for p in paths[1:]) + " |")
        print(row, flush=True)
        lines.append(row)
        if not args.smoke:
            write(args.out, [*lines, ""])
    if args.smoke:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
