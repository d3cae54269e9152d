"""Training: data pipelines, train state and step, checkpoints, logging, the training loop and the
evaluation of a trained run.

Objects come from a config through `configs.builders` (SDE, loss, preconditioning, optimiser,
sampler) and `models.build_model`. Modules, in the order they build on each other (no module
imports a later one):
- data: `training.data` (`build_dataset(config, split, *, batch_size, seed, shuffle=True,
  evaluation=False, drop_remainder=True)` -> grain MapDataset with `ds[step]` = {"image", "label"};
  `get_data_scaler`, `get_data_inverse_scaler`, `load_uint8_images`, `data_shape_of`), data
  sources in `training.datasets`.
- the step: `training.sharding` (mesh, batch layout), `training.state` (`TrainState`),
  `training.train_step`, `training.checkpoint`, `training.logging`, `training.preemption`.
- `training.experiment`: the typed `Experiment` of a config (`build_experiment`), `RunKeys`,
  `make_score_fn`, and `load_trained(config, workdir, step) -> (experiment, state)`, the one
  restore path of every mode that uses a trained model.
- `training.sampling` (`make_sample_fn`, `generate_samples` on the mesh) and
  `training.likelihood` (`split_likelihood`: bits/dim of batches, explicit arguments).
- `training.train_loop.train(config, workdir)`.
- `training.reference_checkpoint`: released score_sde checkpoints (2021 JAX msgpack, PyTorch port)
  written as this framework's train state (`read_flax2021`, `pytorch_weights`, `save_converted`).
- `training.metrics` (FID/KID/IS maths, reference-feature cache; numpy only) and the feature
  extractors `training.digits_classifier`, `training.inception`.
- `training.evaluate`: the evaluation protocol from a config (`sample_to_files`,
  `likelihood_to_file`, `evaluate`); the CLI modes (`scripts.train_modes`) only adapt it.
"""
