"""Training: data pipelines, train state and step, checkpoints, logging and the training loop.

Data API (`training.data`): `build_dataset(config, split, *, batch_size, seed, shuffle=True,
evaluation=False, drop_remainder=True)` -> grain MapDataset with `ds[step]` = {"image", "label"};
`get_data_scaler(config)`, `get_data_inverse_scaler(config)`, `load_uint8_images(config, split)`.
Data sources (embedded TFDS builders, catalog data sets, image folders): `training.datasets`.
"""
