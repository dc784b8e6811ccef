"""The SFT stage: training data and TRL training, with evaluation during it.

data.py reads and validates chat data, generate.py writes the shipped data sets, overlap.py is
the contamination check against the suites. settings.py holds what a user asks for (presets and
the settings file), planning.py fits it to this run (processes, device, steps, memory) as a
`Plan`, trainer.py assembles TRL's SFTTrainer (with varlen.py, compiling.py, head.py and
syncfree.py for speed, lora.py for adapters), and train.py runs it, saves the model and writes
sft.json. curve.py evaluates the model in memory during training; stage.py is what the CLI and
the pipeline call (check, train, register).
"""
