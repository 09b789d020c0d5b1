#!/usr/bin/env bash
# End-to-end fine-tuning on a CPU in ~10 minutes (docs/finetuning.md):
#   1. pretrain a small GPT on Tiny Shakespeare with a 1024-token BPE  (~5 min)
#   2. SFT it on Raschka's 1,100 instructions, Alpaca format            (~5 min)
#   3. print its replies to a few held-out instructions
# Usage: examples/finetune_recipe.sh [RUN_DIR]   (default runs/recipe; needs an empty folder)
set -euo pipefail
RUN=${1:-runs/recipe}
PY=${PYTHON:-python}
DATA=${DATA:-tests/data/instructions/instruction-data.json}

$PY -m scratchllm train --preset shakespeare-bpe --out "$RUN/base" --no-progress \
    block_size=256 batch_size=16 max_steps=2000 max_minutes=5 eval_interval=100 \
    eval_batches=10 sample_tokens=60

$PY -m scratchllm finetune --init-from "$RUN/base" --data "$DATA" --out "$RUN/sft" --no-progress \
    template=alpaca truncate=true batch_size=8 lr=1e-3 min_lr=1e-4 warmup_steps=20 \
    max_steps=1000 max_minutes=5 eval_interval=50 eval_batches=14 sample_tokens=40

$PY - "$RUN/sft" "$DATA" <<'PY'
import json, sys
import scratchllm as sl
from scratchllm.finetune.chat_template import encode_chat, get_template
from scratchllm.finetune.data import split_indices
run, data = sys.argv[1], sys.argv[2]
model, tok, t = sl.load_model(run), sl.load_tokenizer(run), get_template("alpaca")
recs = json.load(open(data))
_, val = split_indices(len(recs), 0.1, 1337)          # the run's held-out records
eos = tok.special_tokens["<|endoftext|>"]
for i in val[:5]:
    msgs = t.messages_from_record(recs[int(i)])[:1]
    ids, _ = encode_chat(t, tok, msgs, add_generation_prompt=True)
    out = model.generate(ids, max_new_tokens=40, temperature=0.0, stop_tokens=(eos,))
    reply = tok.decode([int(x) for x in out[0, len(ids):] if x != eos])
    print(json.dumps({"instruction": msgs[0]["content"], "reference": recs[int(i)]["output"],
                      "reply": reply.strip()}))
PY
