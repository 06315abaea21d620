"""Fine-tuning: one TrainingConfig and one lifecycle (TrainingBackend) for local, Together and OpenAI.

config     TrainingConfig: hyperparameters, presets, YAML in the run folder
backend    the TrainingBackend interface every backend implements
hardware   which device and precision the local trainer uses
local      TRL SFTTrainer / DPOTrainer with a PEFT LoRA, run as the `train_local` job kind
callback   the trainer callback: metrics.jsonl, progress, cancel → checkpoint
service    what the Train page and the command line call
"""
