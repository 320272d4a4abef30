"""The S+U trainer: everything that needs torch (networks, losses, the training loop, export).

Kept import-free so that torch-free parts (core.train_config, simulators) load without torch.
"""
