// fintune-dist's C++ shim: a C interface over PyTorch's c10d process groups (Gloo on CPU,
// NCCL with FINTUNE_DIST_NCCL), compiled by build.rs against the libtorch headers.
//
// Every entry point catches every C++ exception and returns its message as a heap string, so
// no exception unwinds into Rust. Gloo's own headers (from Debian's libgloo-dev) are needed
// only because ProcessGroupGloo.hpp includes them: the class holds Gloo objects through
// pointers alone, so its layout does not depend on the Gloo version, and no Gloo symbol is
// used here (everything is called through libtorch's exported c10d symbols).

#include "fintune_dist.h"

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef FINTUNE_DIST_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

struct fd_group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  int world_size;
};

namespace {

char *dup_error(const std::string &message) {
  char *out = static_cast<char *>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.c_str(), message.size() + 1);
  }
  return out;
}

// Runs `body`, turning any exception into an error string (NULL when it returns normally).
template <typename F> char *guarded(F &&body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error &e) {
    return dup_error(e.what_without_backtrace());
  } catch (const std::exception &e) {
    return dup_error(e.what());
  } catch (...) {
    return dup_error("unknown C++ exception in c10d");
  }
}

// Waits for every work item; the first failure is rethrown after all have finished, so no
// work is left running against tensors Rust may free.
void wait_all(std::vector<c10::intrusive_ptr<c10d::Work>> &works) {
  std::exception_ptr first;
  for (auto &work : works) {
    try {
      work->wait();
    } catch (...) {
      if (!first) {
        first = std::current_exception();
      }
    }
  }
  if (first) {
    std::rethrow_exception(first);
  }
}

std::shared_ptr<gloo::transport::Device> gloo_device(const char *gloo_host) {
  if (gloo_host != nullptr) {
    return c10d::ProcessGroupGloo::createDeviceForHostname(gloo_host);
  }
  if (const char *ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

} // namespace

extern "C" {

char *fd_group_new(int backend, int store_kind, const char *target, uint16_t port, int rank,
                   int world_size, int64_t timeout_ms, const char *gloo_host, fd_group **out) {
  *out = nullptr;
  return guarded([&] {
    const std::chrono::milliseconds timeout(timeout_ms);
    c10::intrusive_ptr<c10d::Store> store;
    if (store_kind == FD_STORE_FILE) {
      store = c10::make_intrusive<c10d::FileStore>(target, world_size);
      store->setTimeout(timeout);
    } else {
      c10d::TCPStoreOptions opts;
      opts.port = port;
      opts.isServer = store_kind == FD_STORE_TCP && rank == 0;
      opts.numWorkers = static_cast<std::size_t>(world_size);
      opts.waitWorkers = true;
      opts.timeout = timeout;
      store = c10::make_intrusive<c10d::TCPStore>(target, opts);
    }
    c10::intrusive_ptr<c10d::Backend> group;
    if (backend == FD_BACKEND_GLOO) {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      options->devices.push_back(gloo_device(gloo_host));
      group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
    } else if (backend == FD_BACKEND_NCCL) {
#ifdef FINTUNE_DIST_NCCL
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
#else
      throw std::runtime_error("NCCL needs fintune-dist's `cuda` feature");
#endif
    } else {
      throw std::runtime_error("unknown backend " + std::to_string(backend));
    }
    *out = new fd_group{std::move(store), std::move(group), world_size};
  });
}

void fd_group_free(fd_group *group) {
  try {
    delete group;
  } catch (...) {
    // A destructor that throws (a peer gone during shutdown) must not unwind into Rust.
  }
}

char *fd_allreduce(fd_group *group, void *const *tensors, size_t n, const size_t *bucket_ends,
                   size_t n_buckets, int average) {
  return guarded([&] {
    std::vector<std::vector<at::Tensor>> buckets;
    size_t start = 0;
    for (size_t b = 0; b < n_buckets; ++b) {
      const size_t end = bucket_ends[b];
      if (end <= start || end > n) {
        throw std::runtime_error("invalid bucket boundaries");
      }
      std::vector<at::Tensor> bucket;
      for (size_t i = start; i < end; ++i) {
        bucket.push_back(*static_cast<at::Tensor *>(tensors[i]));
      }
      buckets.push_back(std::move(bucket));
      start = end;
    }
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto &bucket : buckets) {
      if (bucket.size() == 1) {
        works.push_back(group->backend->allreduce(bucket, c10d::AllreduceOptions{}));
      } else {
        works.push_back(
            group->backend->allreduce_coalesced(bucket, c10d::AllreduceCoalescedOptions{}));
      }
    }
    wait_all(works);
    if (average != 0) {
      for (auto &bucket : buckets) {
        for (auto &t : bucket) {
          t.div_(group->world_size);
        }
      }
    }
  });
}

char *fd_broadcast(fd_group *group, void *tensor, int root) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*static_cast<at::Tensor *>(tensor)};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    std::vector<c10::intrusive_ptr<c10d::Work>> works{group->backend->broadcast(tensors, opts)};
    wait_all(works);
  });
}

char *fd_all_gather(fd_group *group, void *input, void *const *outputs, size_t world_size) {
  return guarded([&] {
    std::vector<at::Tensor> inputs{*static_cast<at::Tensor *>(input)};
    std::vector<std::vector<at::Tensor>> gathered(1);
    for (size_t r = 0; r < world_size; ++r) {
      gathered[0].push_back(*static_cast<at::Tensor *>(outputs[r]));
    }
    std::vector<c10::intrusive_ptr<c10d::Work>> works{
        group->backend->allgather(gathered, inputs, c10d::AllgatherOptions{})};
    wait_all(works);
  });
}

char *fd_barrier(fd_group *group) {
  return guarded([&] {
    std::vector<c10::intrusive_ptr<c10d::Work>> works{
        group->backend->barrier(c10d::BarrierOptions{})};
    wait_all(works);
  });
}

void fd_free_error(char *error) { std::free(error); }

} // extern "C"
