"""Data parallelism: the jitted train step over a 4-device mesh (batch split along the data axis,
state replicated) gives the loss and parameters of the same step on one device. Runs in a
subprocess with `--xla_force_host_platform_device_count=4` so the suite keeps one device."""
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    import models
    from configs import load_config
    from configs import builders
    from training.sharding import batch_sharding, make_mesh, shard_batch
    from training.state import init_sharded_state
    from training.train_step import jit_train_steps, make_objective, make_train_step

    assert jax.device_count() == 4
    config = load_config("configs/digits.py", [
        "model.name=mlp", "model.hidden_dims=(32,32)", "model.nf=16", "model.dropout=0.1",
        "optim.lr=1e-2", "optim.warmup=0", "data.uniform_dequantization=true"])
    sde = builders.build_sde(config)
    model = models.build_model(config)
    optimizer = builders.build_optimizer(config)
    objective = make_objective(model, builders.build_loss(config, sde), sde, continuous=True)
    step = make_train_step(objective, optimizer, ema_rate=0.9)
    batches = np.random.default_rng(0).random((3, 2, 16, 8, 8, 1)).astype(np.float32)  # 3 calls x 2 scanned steps

    def run(mesh):
        init = lambda key: models.init_params(key, model, (1, 8, 8, 1))
        state, _ = init_sharded_state(jax.random.PRNGKey(3), init, optimizer, mesh)
        train_fn = jit_train_steps(step, mesh)
        losses = []
        for stacked in batches:
            batch = shard_batch({"image": stacked}, batch_sharding(mesh, leading_axes=1), batch_axis=1)
            assert len(batch["image"].sharding.device_set) == mesh.size
            state, metrics = train_fn(state, batch)
            losses.append(np.asarray(metrics["loss"]))
        assert len(state.params["Dense_0"]["kernel"].sharding.device_set) == mesh.size
        return np.concatenate(losses), jax.device_get(state)

    loss_1, state_1 = run(make_mesh(jax.devices()[:1]))
    loss_4, state_4 = run(make_mesh())
    assert int(state_1.step) == int(state_4.step) == 6
    np.testing.assert_allclose(loss_4, loss_1, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(state_4), jax.tree.leaves(state_1), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    initial, _ = init_sharded_state(jax.random.PRNGKey(3), lambda key: models.init_params(key, model, (1, 8, 8, 1)),
                                    optimizer, make_mesh(jax.devices()[:1]))
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(initial.params), jax.tree.leaves(state_1.params), strict=True))
    assert moved > 1e-3, moved
    print("OK", loss_1.tolist())
""")


def test_four_device_train_step_matches_one_device(run_on_four_devices):
    out = run_on_four_devices(SCRIPT, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
