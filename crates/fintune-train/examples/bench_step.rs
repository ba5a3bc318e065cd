//! Seconds per multi-task training step (forward, both losses, backward, clipping, AdamW) for
//! any backbone and tuning mode, on random token ids of a fixed shape. Prints one JSON line.
//!
//! `cargo run --release -p fintune-train --example bench_step -- DIR TUNING [BATCH] [SEQ] [STEPS] [DEVICE]`
//! e.g. `... -- .fintune/models/SmolLM2-135M-Instruct lora:8 16 64 5`

use std::time::Instant;

use fintune_model::{Batch, HeadsConfig, ModelSpec, MultiTaskModel, Tuning};
use fintune_train::optim::{AdamW, AdamWConfig, GroupRates, LayerDecay, LinearSchedule};
use tch::{Kind, Reduction, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let dir = a.first().ok_or("usage: bench_step DIR TUNING [BATCH] [SEQ] [STEPS] [DEVICE]")?;
    let tuning: Tuning = a.get(1).map_or("full", String::as_str).parse()?;
    let n = |i: usize, d: i64| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (b, l, steps) = (n(2, 16), n(3, 64), n(4, 5) as usize);
    let device = fintune_model::device_from_str(a.get(5).map_or("cpu", String::as_str))?;
    tch::manual_seed(0);
    let spec = ModelSpec {
        heads: HeadsConfig { num_classes: Some(5), ..Default::default() },
        tuning: tuning.clone(),
        max_len: l as usize,
        pooling: None,
        gradient_checkpointing: std::env::var_os("FINTUNE_CHECKPOINTING").is_some(),
        bf16: std::env::var("FINTUNE_PRECISION").is_ok_and(|p| p == "bf16"),
        ..Default::default()
    };
    let t_load = Instant::now();
    let model = MultiTaskModel::new(dir.as_ref(), &spec, device)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let params = model.parameters();
    let trainable: i64 = params.iter().map(|p| p.tensor.numel() as i64).sum();
    let rates = GroupRates { lr: 1e-4, weight_decay: 0.01 };
    let mut opt = AdamW::new(
        params,
        AdamWConfig {
            backbone: rates,
            adapter: rates,
            head: rates,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            layer_decay: LayerDecay::OFF,
        },
    );
    let sched = LinearSchedule::new(steps as u64 + 1, 0.0);
    let ids = Tensor::randint_low(100, 30000, [b, l], (Kind::Int64, device));
    let batch = Batch::from_ids(ids, Tensor::ones([b, l], (Kind::Int64, device)));
    let y = Tensor::rand([b], (Kind::Float, device)) * 2.0 - 1.0;
    let c = Tensor::randint(5, [b], (Kind::Int64, device));
    let mut times = Vec::new();
    // FINTUNE_BENCH_PHASES=1 on a GPU: the device is synchronised after each phase (forward
    // with the losses, backward, clipping, optimiser), whose medians are printed too.
    let phases = std::env::var_os("FINTUNE_BENCH_PHASES").is_some() && device.is_cuda();
    let mut phase_times: [Vec<f64>; 4] = Default::default();
    let mut mark = |i: usize, since: &mut Instant, s: usize| {
        if phases {
            tch::Cuda::synchronize(0);
            if s > 0 {
                phase_times[i].push(since.elapsed().as_secs_f64() * 1e3);
            }
            *since = Instant::now();
        }
    };
    for s in 0..steps + 1 {
        let t = Instant::now();
        let mut since = t;
        opt.zero_grad();
        // The trainer's path: backbone, heads on a detached copy of the pooled representation,
        // then one backward pass through the backbone (recomputing the layers when
        // FINTUNE_CHECKPOINTING is set).
        let pooled = model.forward_backbone(&batch, true);
        let z = pooled.detach().set_requires_grad(true);
        let (score, logits) = model.forward_heads(&z, true);
        let loss = score.mse_loss(&y, Reduction::Mean)
            + logits.as_ref().expect("classes").cross_entropy_for_logits(&c);
        mark(0, &mut since, s);
        loss.backward();
        model.backward_backbone(&pooled, &z.grad());
        mark(1, &mut since, s);
        opt.clip_grad_norm(1.0);
        mark(2, &mut since, s);
        opt.step(sched.factor(s as u64));
        mark(3, &mut since, s);
        let _ = loss.double_value(&[]);
        if s > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    if phases {
        let m = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let [f, b, c, o] = &mut phase_times;
        println!(
            "{{\"phases_ms\": {{\"forward\": {:.3}, \"backward\": {:.3}, \"clip\": {:.3}, \"optimizer\": {:.3}}}}}",
            m(f),
            m(b),
            m(c),
            m(o)
        );
    }
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |k| k / 1024.0);
    println!(
        "{{\"backbone\": \"{dir}\", \"tuning\": \"{tuning}\", \"device\": \"{device:?}\", \"threads\": {}, \"batch\": {b}, \"seq\": {l}, \"trainable_params\": {trainable}, \"load_s\": {load_s:.2}, \"seconds_per_step\": {med:.5}, \"samples_per_s\": {:.1}, \"peak_rss_mib\": {rss:.0}}}",
        tch::get_num_threads(),
        b as f64 / med
    );
    Ok(())
}
