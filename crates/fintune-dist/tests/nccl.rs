//! NCCL on one GPU: a process group of one rank initialises, reduces, broadcasts and gathers
//! CUDA tensors (NCCL between two processes on one GPU would measure nothing). Run by
//! `cargo xtask gpu-check` on a GPU machine, with `--features cuda`.

use std::time::Duration;

use fintune_dist::{Backend, ProcessGroup, ReduceOp, Store};
use tch::{Device, Kind, Tensor};

#[test]
#[ignore = "needs a CUDA device"]
fn gpu_nccl_group_of_one_rank_reduces_cuda_tensors() {
    assert!(tch::Cuda::is_available(), "no CUDA device: run this on a GPU machine");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::File(dir.path().join("store"));
    let pg = ProcessGroup::with_backend(Backend::Nccl, &store, 0, 1, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("NCCL group of one rank: {e}"));
    assert_eq!((pg.rank(), pg.world_size(), pg.backend()), (0, 1, Backend::Nccl));
    let dev = Device::Cuda(0);
    let want = Tensor::from_slice(&[1.5f32, -2.0, 3.25]);
    let mut t = want.to_device(dev);
    pg.allreduce(&mut t, ReduceOp::Sum).unwrap();
    assert_eq!(t.device(), dev);
    assert!(t.to_device(Device::Cpu).equal(&want), "a sum over one rank is the tensor itself");
    let mut ts: Vec<Tensor> =
        (1..=4).map(|i| Tensor::full([i * 1000 + 3], i as f64, (Kind::Float, dev))).collect();
    pg.allreduce_bucketed(&mut ts, ReduceOp::Avg, 8 * 1024).unwrap();
    for (i, t) in ts.iter().enumerate() {
        let v = t.to_device(Device::Cpu);
        assert_eq!(v.min().double_value(&[]), (i + 1) as f64);
        assert_eq!(v.max().double_value(&[]), (i + 1) as f64);
    }
    pg.broadcast(&mut t, 0).unwrap();
    assert!(t.to_device(Device::Cpu).equal(&want));
    let all = pg.all_gather(&t).unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].to_device(Device::Cpu).equal(&want));
    pg.barrier().unwrap();
    println!("NCCL group of one rank: allreduce (sum, bucketed avg), broadcast, all_gather, barrier on CUDA tensors");
}
