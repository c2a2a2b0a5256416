"""TRL's own DPOTrainer (not this project's) on the tiny in-code model: what a user who trains
with plain TRL runs on dpov2's pairs. Shared by the tests that check those pairs train."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets


def plain_trl_trainer(pairs: datasets.Dataset, tmp_path: Path) -> Any:
    """A `trl.DPOTrainer` for one step of 4 pairs on CPU, the reference an instance (nothing to
    load from a hub)."""
    from trl import DPOConfig, DPOTrainer

    from dpov2.tiny_model import build_tiny_model, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = DPOConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=1,
        report_to="none",
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
    )
    return DPOTrainer(
        model=build_tiny_model(tokenizer),
        ref_model=build_tiny_model(tokenizer),
        args=config,
        train_dataset=pairs,
        processing_class=tokenizer,
    )
