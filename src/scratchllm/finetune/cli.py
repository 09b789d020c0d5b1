"""Fine-tune a pretrained model on instructions/chats (SFT) or preference pairs (DPO).

    scratchllm finetune --init-from runs/base --data instruction-data.json
    scratchllm finetune --init-from runs/base --data chats.jsonl --template chatml --lora lora_r=16
    scratchllm finetune --init-from runs/sft --data prefs.json --dpo dpo_beta=0.1 --lora
    scratchllm finetune --out runs/sft --resume
"""
from __future__ import annotations

import argparse

from ..errors import ScratchLLMError
from .config import FinetuneConfig


def add_finetune_command(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "finetune", help="fine-tune a model: instruction/chat SFT or DPO, full or LoRA",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]) + "\nconfig keys: "
        + ", ".join(FinetuneConfig.__dataclass_fields__))
    p.add_argument("--init-from", default=None, metavar="MODEL",
                   help="the base model (scratchllm run, HF or Meta folder, llama2.c .bin)")
    p.add_argument("--data", action="append", default=None, metavar="FILE",
                   help="JSON or JSONL records: instruction/input/output, messages, or "
                        "+chosen/rejected for --dpo (repeatable)")
    p.add_argument("--template", default=None,
                   help="chat template: alpaca (default), chatml, llama3, or an HF folder / "
                        "tokenizer_config.json")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters, the base frozen")
    p.add_argument("--dpo", action="store_true", help="DPO on chosen/rejected pairs")
    p.add_argument("--out", default=None, help="run folder (default runs/finetune)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. lora_r=16 lr=3e-4 batch_size=4")
    p.set_defaults(func=run_finetune)
    return p


def resolve_config(args) -> tuple:
    from ..train.checkpoint import read_json
    from ..train.config import parse_overrides
    from .trainer import CONFIG
    from pathlib import Path
    out = args.out or "runs/finetune"
    cfg = FinetuneConfig()
    if args.resume:
        path = Path(out) / CONFIG
        if not path.is_file():
            raise ScratchLLMError(f"nothing to resume: {out} holds no fine-tuning run")
        cfg = FinetuneConfig.from_dict(read_json(path, "fine-tuning config"), str(path))
    overrides = parse_overrides(args.overrides)
    for key, value in (("init_from", args.init_from), ("template", args.template),
                       ("max_steps", args.max_steps), ("data", args.data)):
        if value is not None:
            overrides[key] = value
    for key in ("lora", "dpo"):
        if getattr(args, key):
            overrides[key] = True
    return cfg.updated(overrides, source="command line"), out


def run_finetune(args) -> int:
    from .trainer import finetune
    cfg, out = resolve_config(args)
    finetune(cfg, out, resume=args.resume, progress=not args.no_progress)
    return 0
