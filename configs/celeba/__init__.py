"""CelebA 64x64 configs (one file per model; `get_config()` in each)."""
