//! The optimizers against reference updates, state round trips and in-place updates.

use super::*;

/// A row-sparse gradient gives the same weights, moments and norm bits as the dense
/// gradient with zeros elsewhere, for every optimizer, with clipping, over three steps
/// whose rows differ (so unused rows' moments decay), and falls back to the dense path
/// when penalties apply.
#[test]
fn sparse_rows_step_equals_dense() {
    let (vocab, dim) = (37, 5);
    let mut rng = model::rng::SeededRng::new(4, "test");
    for kind in [OptimizerKind::Adam, OptimizerKind::Adamw, OptimizerKind::Sgd] {
        for penalised in [false, true] {
            let cfg = TrainConfig {
                optimizer: kind,
                lr: 0.01,
                clip_norm: 0.5,
                weight_decay: 0.1,
                momentum: 0.9,
                l2: 0.01,
                ..Default::default()
            };
            let init: Vec<f32> = rng.normal_vec(vocab * dim, 0.0, 1.0).into_iter().map(|x| x as f32).collect();
            let mk = || Param {
                name: "emb".into(),
                var: Var::from_slice(&init, (vocab, dim), &Device::Cpu).unwrap(),
                penalised,
            };
            let (pd, ps) = (vec![mk()], vec![mk()]);
            let (mut od, mut os) = (Optimizer::new(&cfg), Optimizer::new(&cfg));
            for step in 0..3 {
                let rows: Vec<u32> = match step {
                    0 => vec![0, 3, 4, 36],
                    1 => vec![5],
                    _ => vec![3, 20, 21],
                };
                let vals: Vec<f32> = rng.normal_vec(rows.len() * dim, 0.0, 1.0).into_iter().map(|x| x as f32).collect();
                let r = SparseRows { dim, rows, values: vals };
                let dense = Tensor::from_vec(r.to_dense(vocab), (vocab, dim), &Device::Cpu).unwrap();
                // A GradStore holding `dense` for the dense run: the gradient of Σ w·dense.
                let g = (pd[0].var.as_tensor() * &dense).unwrap().sum_all().unwrap().backward().unwrap();
                let a = od.step(&pd, &g, 0.01).unwrap();
                let empty = Tensor::zeros((), DType::F32, &Device::Cpu).unwrap().backward().unwrap();
                let b = os.step_sparse(&ps, &empty, &[("emb".to_string(), r)], 0.01).unwrap();
                assert_eq!(a.grad_norm.to_bits(), b.grad_norm.to_bits(), "{kind:?} step {step}");
                assert_eq!(a.penalty.to_bits(), b.penalty.to_bits());
                let flat = |p: &[Param]| p[0].var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let (wd, ws) = (flat(&pd), flat(&ps));
                assert!(
                    wd.iter().zip(&ws).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{kind:?} penalised {penalised} step {step}"
                );
                assert_eq!(od.m, os.m);
                assert_eq!(od.v, os.v);
            }
        }
    }
}

fn setup(kind: OptimizerKind, extra: impl Fn(&mut TrainConfig)) -> (Optimizer, Vec<Param>) {
    let mut cfg = TrainConfig { optimizer: kind, lr: 0.1, ..Default::default() };
    extra(&mut cfg);
    let var = Var::from_slice(&[1.0f32, -2.0, 3.0], 3, &Device::Cpu).unwrap();
    (Optimizer::new(&cfg), vec![Param { name: "w".into(), var, penalised: true }])
}

/// loss = Σ w², gradient 2w.
fn grads(params: &[Param]) -> GradStore {
    params[0].var.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap()
}

fn values(p: &[Param]) -> Vec<f32> {
    p[0].var.as_tensor().to_vec1().unwrap()
}

#[test]
fn adam_matches_reference_first_steps() {
    // PyTorch Adam(lr=0.1): each first step moves every weight by lr against its
    // gradient's sign (m̂/√v̂ = ±1).
    let (mut opt, p) = setup(OptimizerKind::Adam, |_| {});
    let g = grads(&p);
    opt.step(&p, &g, 0.1).unwrap();
    let w = values(&p);
    for (a, b) in w.iter().zip([0.9f32, -1.9, 2.9]) {
        assert!((a - b).abs() < 1e-6, "{w:?}");
    }
}

#[test]
fn sgd_momentum_and_decoupled_decay() {
    let (mut opt, p) = setup(OptimizerKind::Sgd, |c| {
        c.momentum = 0.5;
        c.weight_decay = 0.1;
    });
    let g = grads(&p);
    opt.step(&p, &g, 0.1).unwrap();
    // w ← w·(1 − 0.1·0.1) − 0.1·2w
    assert!((values(&p)[0] - (0.99 - 0.2)).abs() < 1e-6);
    let g = grads(&p);
    opt.step(&p, &g, 0.1).unwrap();
    let w1 = 0.79f32;
    let m = 0.5 * 2.0 + 2.0 * w1;
    assert!((values(&p)[0] - (w1 * 0.99 - 0.1 * m)).abs() < 1e-6);
}

#[test]
fn l2_penalty_adds_gradient_and_reports_value() {
    let (mut opt, p) = setup(OptimizerKind::Sgd, |c| {
        c.momentum = 0.0;
        c.l2 = 0.5;
    });
    assert!((opt.penalty(&p).unwrap() - 0.5 * 14.0).abs() < 1e-9);
    let g = grads(&p);
    let r = opt.step(&p, &g, 0.1).unwrap();
    assert!((r.penalty - 7.0).abs() < 1e-9);
    // gradient 2w + 2·0.5·w = 3w
    assert!((values(&p)[0] - (1.0 - 0.3)).abs() < 1e-6);
}

#[test]
fn clipping_scales_to_the_global_norm() {
    let (mut opt, p) = setup(OptimizerKind::Sgd, |c| {
        c.momentum = 0.0;
        c.clip_norm = 1.0;
    });
    let g = grads(&p);
    let r = opt.step(&p, &g, 1.0).unwrap();
    let norm = (4.0f64 + 16.0 + 36.0).sqrt();
    assert!((r.grad_norm - norm).abs() < 1e-6);
    let w = values(&p);
    assert!((w[0] as f64 - (1.0 - 2.0 / norm)).abs() < 1e-5, "{w:?}");
}

#[test]
fn state_round_trips() {
    let (mut opt, p) = setup(OptimizerKind::Adam, |_| {});
    let g = grads(&p);
    opt.step(&p, &g, 0.1).unwrap();
    let saved = opt.state_tensors().unwrap();
    let mut again = Optimizer::new(&TrainConfig::default());
    again.load_state(opt.step, &saved).unwrap();
    assert_eq!(again.m, opt.m);
    assert_eq!(again.v, opt.v);
}

/// The optimizer as it was before the in-place rewrite (host copies, materialised
/// gradient), kept as the bit-exact reference.
#[allow(clippy::too_many_arguments)]
fn reference_step(
    cfg: &TrainConfig,
    step: u64,
    ws: &mut [Vec<f32>],
    gs: &[Vec<f32>],
    penalised: &[bool],
    ms: &mut [Vec<f32>],
    vs: &mut [Vec<f32>],
    lr: f64,
) -> f64 {
    let mut sq = 0.0f64;
    let mut gg = Vec::new();
    for (k, (w, g)) in ws.iter().zip(gs).enumerate() {
        let mut g = g.clone();
        if penalised[k] && (cfg.l2 != 0.0 || cfg.l1 != 0.0) {
            let (l2x2, l1) = (2.0 * cfg.l2 as f32, cfg.l1 as f32);
            for (gi, wi) in g.iter_mut().zip(w) {
                *gi += l2x2 * wi + l1 * sign(*wi);
            }
        }
        // The summation order is the one change of arithmetic: 8 interleaved partial sums.
        sq += sum_squares(&g, |_, x| x);
        gg.push(g);
    }
    let grad_norm = sq.sqrt();
    let scale = if cfg.clip_norm > 0.0 && grad_norm > cfg.clip_norm {
        (cfg.clip_norm / (grad_norm + 1e-6)) as f32
    } else {
        1.0
    };
    let t = step as i32;
    let (b1, b2) = (cfg.beta1 as f32, cfg.beta2 as f32);
    let bc1 = 1.0 - cfg.beta1.powi(t);
    let bc2 = 1.0 - cfg.beta2.powi(t);
    let step_size = (lr / bc1) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    let eps = cfg.eps as f32;
    let decay = (1.0 - lr * cfg.weight_decay) as f32;
    let mom = cfg.momentum as f32;
    for (k, g) in gg.iter().enumerate() {
        let (w, m, v) = (&mut ws[k], &mut ms[k], &mut vs[k]);
        for j in 0..w.len() {
            let gj = g[j] * scale;
            match cfg.optimizer {
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    m[j] = b1 * m[j] + (1.0 - b1) * gj;
                    v[j] = b2 * v[j] + (1.0 - b2) * gj * gj;
                    if cfg.weight_decay != 0.0 {
                        w[j] *= decay;
                    }
                    w[j] -= step_size * m[j] / (v[j].sqrt() / bc2_sqrt + eps);
                }
                OptimizerKind::Sgd => {
                    m[j] = if mom != 0.0 { mom * m[j] + gj } else { gj };
                    if cfg.weight_decay != 0.0 {
                        w[j] *= decay;
                    }
                    w[j] -= lr as f32 * m[j];
                }
            }
        }
    }
    grad_norm
}

#[test]
fn in_place_update_is_bit_identical_to_the_reference() {
    let mut rng = model::rng::SeededRng::new(7, "optim-test");
    let shapes = [(5usize, 3usize), (7, 1), (1, 11)];
    type Variant = (&'static str, Box<dyn Fn(&mut TrainConfig)>);
    let variants: Vec<Variant> = vec![
        ("adam", Box::new(|c: &mut TrainConfig| c.optimizer = OptimizerKind::Adam)),
        (
            "adam+l2+l1+clip",
            Box::new(|c: &mut TrainConfig| {
                c.optimizer = OptimizerKind::Adam;
                c.l2 = 0.01;
                c.l1 = 0.001;
                c.clip_norm = 0.5;
            }),
        ),
        (
            "adamw",
            Box::new(|c: &mut TrainConfig| {
                c.optimizer = OptimizerKind::Adamw;
                c.weight_decay = 0.1;
            }),
        ),
        (
            "sgd momentum decay clip",
            Box::new(|c: &mut TrainConfig| {
                c.optimizer = OptimizerKind::Sgd;
                c.momentum = 0.9;
                c.weight_decay = 0.05;
                c.clip_norm = 0.3;
            }),
        ),
        (
            "sgd plain l2",
            Box::new(|c: &mut TrainConfig| {
                c.optimizer = OptimizerKind::Sgd;
                c.momentum = 0.0;
                c.l2 = 0.02;
            }),
        ),
    ];
    for (name, set) in variants {
        let mut cfg = TrainConfig { lr: 0.05, ..Default::default() };
        set(&mut cfg);
        let mut opt = Optimizer::new(&cfg);
        let penalised = [true, false, true];
        let params: Vec<Param> = shapes
            .iter()
            .enumerate()
            .map(|(k, &(r, c))| {
                let v: Vec<f32> = rng.normal_vec(r * c, 0.0, 1.0).into_iter().map(|x| x as f32).collect();
                Param {
                    name: format!("p{k}"),
                    var: Var::from_vec(v, (r, c), &Device::Cpu).unwrap(),
                    penalised: penalised[k],
                }
            })
            .collect();
        let mut ws: Vec<Vec<f32>> = params.iter().map(|p| to_vec(p.var.as_tensor()).unwrap()).collect();
        let mut ms: Vec<Vec<f32>> = ws.iter().map(|w| vec![0.0; w.len()]).collect();
        let mut vs = ms.clone();
        for step in 1..=4u64 {
            // loss = Σ_k Σ r_k ⊙ w_k³: gradients 3 r w², different per element.
            let rs: Vec<Tensor> = shapes
                .iter()
                .map(|&(r, c)| rng.normal_tensor((r, c), 0.0, 1.0, DType::F32, &Device::Cpu).unwrap())
                .collect();
            let mut loss = Tensor::zeros((), DType::F32, &Device::Cpu).unwrap();
            for (p, r) in params.iter().zip(&rs) {
                loss = (loss + (p.var.as_tensor().powf(3.0).unwrap() * r).unwrap().sum_all().unwrap()).unwrap();
            }
            let grads = loss.backward().unwrap();
            let gs: Vec<Vec<f32>> =
                params.iter().map(|p| to_vec(grads.get(p.var.as_tensor()).unwrap()).unwrap()).collect();
            let report = opt.step(&params, &grads, 0.05).unwrap();
            let norm = reference_step(&cfg, step, &mut ws, &gs, &penalised, &mut ms, &mut vs, 0.05);
            assert_eq!(report.grad_norm.to_bits(), norm.to_bits(), "{name} step {step}");
            for (k, p) in params.iter().enumerate() {
                let got = to_vec(p.var.as_tensor()).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&ws[k]), "{name} step {step} weights p{k}");
                assert_eq!(bits(&opt.m[&p.name]), bits(&ms[k]), "{name} step {step} m p{k}");
                if matches!(cfg.optimizer, OptimizerKind::Adam | OptimizerKind::Adamw) {
                    assert_eq!(bits(&opt.v[&p.name]), bits(&vs[k]), "{name} step {step} v p{k}");
                }
            }
        }
    }
}

#[test]
fn updates_in_place_without_replacing_the_storage() {
    // A detached view shares the parameter's storage: an in-place update shows through it.
    let (mut opt, p) = setup(OptimizerKind::Adam, |_| {});
    let view = p[0].var.as_tensor().detach();
    let g = grads(&p);
    opt.step(&p, &g, 0.1).unwrap();
    assert_eq!(view.to_vec1::<f32>().unwrap(), values(&p));
}

#[test]
fn non_f32_parameters_take_the_generic_path() {
    let cfg = TrainConfig { optimizer: OptimizerKind::Sgd, momentum: 0.0, lr: 0.1, ..Default::default() };
    let var = Var::from_slice(&[1.0f64, -2.0, 3.0], 3, &Device::Cpu).unwrap();
    let p = vec![Param { name: "w".into(), var, penalised: true }];
    let mut opt = Optimizer::new(&cfg);
    let g = p[0].var.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
    opt.step(&p, &g, 0.1).unwrap();
    // The generic path computes in f32, as before the rewrite.
    let want: Vec<f64> = [0.8f32, -1.6, 2.4].iter().map(|&x| x as f64).collect();
    assert_eq!(p[0].var.as_tensor().to_vec1::<f64>().unwrap(), want);
}
