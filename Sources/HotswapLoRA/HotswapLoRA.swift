// LoRA adapters: files, key mapping, cache, fuse/restore.
