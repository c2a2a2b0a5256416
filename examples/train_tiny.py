"""Select pairs with dpov2 and train a tiny in-code model on them with DPOv2Trainer, on CPU.

Run: python examples/train_tiny.py   (about half a minute; nothing is downloaded)
"""

import tempfile

from datasets import Dataset

from dpov2 import select_pairs
from dpov2.tiny_model import build_tiny_model, build_tiny_tokenizer
from dpov2.trainer import DPOv2Config, DPOv2Trainer

# 64 prompts x 4 scored responses: polite answers score high, rude ones low.
prompts = [f"User: question {i}. Assistant:" for i in range(64)]
texts = [" thank you, happy to help.", " fine.", " no.", " go away."]
scores = [2.0, 0.5, -0.5, -2.0] * len(prompts)
offsets = list(range(0, 4 * len(prompts) + 1, 4))

sel = select_pairs(scores, offsets, method="max_random", seed=0)
rows = [
    {
        "prompt": prompts[p],
        "chosen": texts[c % 4],
        "rejected": texts[r % 4],
        "margin": scores[c] - scores[r],
    }
    for p, (c, r) in enumerate(zip(sel.chosen.tolist(), sel.rejected.tolist(), strict=True))
    if c >= 0
]

tokenizer = build_tiny_tokenizer([*prompts, *texts])
model = build_tiny_model(tokenizer, seed=0)
with tempfile.TemporaryDirectory() as out:
    config = DPOv2Config(
        output_dir=out,
        loss_type="rev_kl",  # uses each pair's margin as the target preference strength
        beta=0.1,
        max_length=32,
        per_device_train_batch_size=8,
        learning_rate=5e-3,
        max_steps=20,
        logging_steps=5,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
    )
    trainer = DPOv2Trainer(
        model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    trainer.train()
    history = [h for h in trainer.state.log_history if "rewards/accuracies" in h]
    print(
        f"reward accuracy: {history[0]['rewards/accuracies']:.2f} -> "
        f"{history[-1]['rewards/accuracies']:.2f}"
    )
