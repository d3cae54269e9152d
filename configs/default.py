"""Base config: every key a run can set, with the defaults of the 2021 reference code.

This config is the schema: experiment files start from `get_default_config()` and change only
what differs, and an override of a key that is not here is an error (the config is locked).
"""
import ml_collections


def get_default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 42

    config.training = training = ml_collections.ConfigDict()
    training.sde = "vpsde"  # vpsde | subvpsde | vesde
    training.loss = "dsm"  # dsm (continuous) | ddpm | smld (discrete) | edm
    training.continuous = True
    training.reduce_mean = False
    training.likelihood_weighting = False
    training.importance_sampling = False
    training.eps = 1e-5  # smallest t of the continuous loss
    training.batch_size = 128
    training.n_iters = 1_300_001
    training.n_jitted_steps = 1
    training.grad_accum_steps = 1  # micro-batches per optimiser step (same update, 1/n activation memory)
    training.log_freq = 50
    training.eval_freq = 100
    training.snapshot_freq = 50_000
    training.snapshot_freq_for_preemption = 10_000
    training.snapshot_sampling = True
    training.keep_checkpoints = 5
    training.label_dropout = 0.0  # class-conditional models: probability of the null label (CFG training)

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.method = "pc"
    sampling.predictor = "euler_maruyama"
    sampling.corrector = "none"
    sampling.snr = 0.16
    sampling.n_steps_each = 1
    sampling.denoise = True  # the last step is Tweedie's posterior mean (2021: noise_removal)
    sampling.probability_flow = False
    sampling.eps = 1e-3  # final time of the reverse process
    sampling.num_steps = 0  # 0: the SDE's N
    sampling.rtol = 1e-5
    sampling.atol = 1e-5
    sampling.batch_size = 64
    # Options of single samplers (each sampler reads the ones it has):
    sampling.solver = "tsit5"  # ode: a key of samplers.ode.SOLVERS (adaptive unless num_steps > 0)
    sampling.max_steps = 4096  # ode: most solver steps
    sampling.eta = 0.0  # ddim / dpm_solver_sde: 0 deterministic, 1 DDPM-like noise / the reverse SDE
    sampling.order = 0  # dpm_solver / dpm_solver_sde / unipc / lms / ipndm multistep order; 0: the sampler's own
    sampling.variable_step = False  # ipndm: True: Adams-Bashforth weights for the actual steps (ipndm_v)
    sampling.schedule = ""  # ddim / dpm_solver / edm_heun noise levels: karras | log_snr | uniform_t; "": the sampler's own
    sampling.rho = 7.0  # the karras schedule's exponent
    sampling.sigma_min = 0.0  # ddim / dpm_solver / edm_heun noise range; 0: the SDE's
    sampling.sigma_max = 0.0
    sampling.S_churn = 0.0  # edm_heun stochasticity (Karras et al. 2022, alg. 2)
    sampling.S_min = 0.0
    sampling.S_max = float("inf")
    sampling.S_noise = 1.0
    sampling.step_lr = 6.2e-6  # ald: step size at the smallest noise level
    # Class-conditional sampling (labels from `score-sde sample --labels`):
    sampling.guidance = "none"  # none: the conditional score | cfg: classifier-free | classifier: noisy classifier
    sampling.guidance_weight = 0.0  # cfg: w of (1 + w) s(x, y) - w s(x, null); classifier: the scale of its gradient

    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.batch_size = 256
    evaluate.num_samples = 1024
    evaluate.enable_sampling = True
    evaluate.enable_bpd = True
    evaluate.enable_loss = True
    evaluate.bpd_dataset = "test"
    evaluate.fid_dataset = "test"  # the split whose images are FID/KID's reference set
    evaluate.fid_num_real = 0  # use at most this many of its images; 0: all
    evaluate.num_probes = 1
    evaluate.checkpoint = 0  # 0: the latest

    config.data = data = ml_collections.ConfigDict()
    data.dataset = "digits"
    data.data_dir = ""  # TFDS data_dir; empty: the TFDS default
    data.image_size = 8
    data.num_channels = 1
    data.random_flip = False
    data.centered = False
    data.uniform_dequantization = False
    data.num_workers = 0

    config.model = model = ml_collections.ConfigDict()
    model.name = "ncsnpp"
    # SDE parameters (kept in the model section, as in the 2021 code)
    model.sigma_min = 0.01
    model.sigma_max = 50.0
    model.num_scales = 1000
    model.beta_min = 0.1
    model.beta_max = 20.0
    # Parametrisation and conditioning
    model.scale_by_sigma = False
    model.precond = "none"  # none | edm | vp | ve
    model.sigma_data = 0.5
    model.ema_rate = 0.9999
    model.ema_warmup = False
    model.compute_dtype = "float32"  # float32 | bfloat16
    model.conv_impl = "auto"  # auto | xla | im2col: same maths; im2col's kernel gradients are faster on CPUs,
    # auto picks im2col on a CPU backend and xla on accelerators (ncsnpp, ddpm)
    model.remat = False  # recompute the residual blocks' activations in the backward pass (ncsnpp)
    # Architecture (NCSN++ / DDPM++ options; other networks read the subset they use)
    model.nf = 128
    model.ch_mult = (1, 2, 2, 2)
    model.num_res_blocks = 2
    model.attn_resolutions = (16,)
    model.dropout = 0.1
    model.resamp_with_conv = True
    model.conditional = True
    model.nonlinearity = "swish"
    model.fir = False
    model.fir_kernel = (1, 3, 3, 1)
    model.skip_rescale = True
    model.resblock_type = "biggan"  # ddpm | biggan
    model.progressive = "none"  # none | output_skip | residual
    model.progressive_input = "none"  # none | input_skip | residual
    model.progressive_combine = "sum"  # sum | cat
    model.embedding_type = "positional"  # fourier | positional
    model.fourier_scale = 16.0
    model.init_scale = 0.0
    model.hidden_dims = (128, 128, 128)  # mlp only
    model.interpolation = "bilinear"  # ncsn / ncsnv2 RefineNet fusion: bilinear | nearest
    model.num_classes = 0  # class-conditional ncsnpp / ddpm / mlp with this many classes; 0: unconditional

    # The noise-conditional classifier of classifier guidance (`score-sde train_guidance_classifier`),
    # trained on the same SDE as the score model; its own checkpoints in <workdir>/guidance_classifier.
    config.classifier = classifier = ml_collections.ConfigDict()
    classifier.num_classes = 0  # classes of the labels (0: model.num_classes)
    classifier.nf = 64  # width of its noise embedding and layers
    classifier.hidden_dims = (128, 128)  # point data: residual MLP widths; images: conv channels per level
    classifier.n_iters = 2_000
    classifier.batch_size = 128
    classifier.lr = 1e-3

    config.optim = optim = ml_collections.ConfigDict()
    optim.optimizer = "Adam"
    optim.lr = 2e-4
    optim.beta1 = 0.9
    optim.eps = 1e-8
    optim.weight_decay = 0.0
    optim.warmup = 5000
    optim.grad_clip = 1.0

    config.lock()
    return config
