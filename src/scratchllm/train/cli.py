"""Train a language model from a preset, a config file and key=value overrides.

    scratchllm train                                    # the main job: shakespeare-char
    scratchllm train --preset llama-tiny --max-steps 2000
    scratchllm train --data my_text.txt n_layer=6 lr=1e-3
    scratchllm train --init-from gpt2-folder --data my_text.txt max_steps=200
    scratchllm train --out runs/shakespeare-char --resume
"""
from __future__ import annotations

import argparse

from ..errors import ScratchLLMError
from .config import TrainConfig, parse_overrides, read_config_file
from .presets import DEFAULT_PRESET, PRESETS, preset_config

# the keys that set a fresh model's shape: meaningless with --init-from (the pretrained model's own)
SHAPE_KEYS = ("arch", "n_layer", "n_head", "n_kv_head", "n_embd", "bias", "positional", "qk_norm", "mlp_act",
              "zero_init_proj", "tie_weights", "logit_softcap", "value_embeds")


def add_train_command(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train a language model (default: the shakespeare-char preset)",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys: " + ", ".join(TrainConfig.__dataclass_fields__))
    p.add_argument("--preset", default=None, help=f"one of {', '.join(PRESETS)} (default {DEFAULT_PRESET})")
    p.add_argument("--out", default=None, help="run folder (default runs/PRESET)")
    p.add_argument("--max-steps", type=int, default=None, help="number of optimizer steps")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--data", action="append", default=None, metavar="PATH",
                   help="text file or folder to train on (repeatable; default: bundled Tiny Shakespeare)")
    p.add_argument("--init-from", default=None, metavar="PATH",
                   help="fine-tune a pretrained model (HF or Meta folder, llama2.c .bin, scratchllm run)")
    p.add_argument("--config", default=None, metavar="FILE", help="a .toml or .json file of config keys")
    p.add_argument("--no-progress", action="store_true",
                   help="plain log lines (step N/M | loss X | ...) instead of a progress bar; "
                        "also the default when stderr is not a terminal")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. n_layer=6 lr=1e-3")
    p.set_defaults(func=run_train)
    return p


def resolve_config(args) -> tuple[TrainConfig, str]:
    """The run's config and folder from the command line (see the layering in config.py)."""
    from .setup import saved_config
    if args.preset is not None and args.preset not in PRESETS:
        raise ScratchLLMError(f"unknown preset {args.preset!r}; choose one of: {', '.join(PRESETS)}")
    out = args.out or f"runs/{args.preset or DEFAULT_PRESET}"
    saved = saved_config(out) if args.resume else None
    if args.resume and saved is None:
        raise ScratchLLMError(f"nothing to resume: {out} holds no training run")
    if saved is not None:
        if args.preset is not None and args.preset != saved.preset:
            raise ScratchLLMError(f"{out} holds a run of preset {saved.preset}, not {args.preset}; "
                                  f"choose another --out to start a {args.preset} run")
        cfg = saved
    else:
        cfg = preset_config(args.preset or DEFAULT_PRESET)
    overrides: dict = {}
    if args.config:
        overrides.update(read_config_file(args.config))
    overrides.update(parse_overrides(args.overrides))
    shape = [k for k in SHAPE_KEYS if k in overrides]
    if (args.init_from or overrides.get("init_from")) and shape and saved is None:
        raise ScratchLLMError(f"--init-from takes the architecture of the pretrained model; remove "
                              f"{', '.join(shape)} (shape keys cannot change a pretrained model)")
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    if args.data:
        overrides["data"] = list(args.data)
    if args.init_from:
        overrides["init_from"] = args.init_from
        if "tokenizer" not in overrides and saved is None:
            overrides["tokenizer"] = None          # the pretrained model's own tokenizer
    source = "command line" if not args.config else f"{args.config} / command line"
    return cfg.updated(overrides, source=source), out


def run_train(args) -> int:
    from .trainer import train
    cfg, out = resolve_config(args)
    result = train(cfg, out, resume=args.resume, progress=False if args.no_progress else None)
    return 130 if result.stop_reason == "interrupted" else 0
