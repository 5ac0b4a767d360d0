"""Fine-tuning LLaVA-NeXT for hotel photos: dataset builder, TRL SFT entry point, launcher, evaluation."""
