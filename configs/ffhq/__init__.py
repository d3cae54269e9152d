"""FFHQ configs (one file per model; `get_config()` in each)."""
