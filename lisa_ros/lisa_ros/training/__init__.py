"""Fine-tuning LISA with LoRA on current transformers + peft (no DeepSpeed needed).

``lisa-finetune`` (`lisa_ros.cli.finetune`) drives :func:`trainer.finetune`; the adapter folder it
writes is what ``load_model(..., adapter=DIR)``, ``lisa-segment --adapter`` and the node's
``adapter`` parameter load (:mod:`lisa_ros.training.adapter`). The loss is the paper's
(:mod:`lisa_ros.training.losses`).
"""
