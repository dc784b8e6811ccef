"""The SFT stage: training data (load, generate, contamination check) and TRL training."""
