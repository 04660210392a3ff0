"""Training: the one loop (loop: train, resume, select_init), its setup (setup: device, data,
model, optimizer), finetuning on one's own labels (finetune), losses (losses), run folders and
checkpoints (run_folder), the device and torchrun runtime (device), experiment trackers
(tracking) and the training curves figure (curves).

Layer rule: a module here imports from ``galaxyzoo_cli.training``, ``models``, ``data`` and
``core`` only.
"""
