/* The C interface of fintune-dist's C++ shim over PyTorch's c10d (see shim/fintune_dist.cpp).
 *
 * Conventions: every function that can fail returns a heap string with the error message
 * (release it with fd_free_error), or NULL on success. No C++ exception crosses this
 * interface. Tensors are `at::Tensor*` (what tch's `Tensor::as_mut_ptr()` gives). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fd_group fd_group;

/* Store kinds for fd_group_new. */
enum { FD_STORE_TCP = 0, FD_STORE_TCP_CLIENT = 1, FD_STORE_FILE = 2 };
/* Backends for fd_group_new. */
enum { FD_BACKEND_GLOO = 0, FD_BACKEND_NCCL = 1 };

/* Creates a process group. `store_kind` FD_STORE_TCP: `target` is the host, rank 0 hosts the
 * TCPStore server on `port`; FD_STORE_TCP_CLIENT: every rank is a client of a server someone
 * else hosts (torchrun's agent store); FD_STORE_FILE: `target` is the FileStore path.
 * `gloo_host`: hostname or address the Gloo device binds to (NULL: $GLOO_SOCKET_IFNAME or
 * the default device). On success stores the group in *out and returns NULL. */
char *fd_group_new(int backend, int store_kind, const char *target, uint16_t port,
                   int rank, int world_size, int64_t timeout_ms, const char *gloo_host,
                   fd_group **out);
void fd_group_free(fd_group *group);

/* Sums `n` tensors in place across ranks (then divides by the world size when `average`).
 * The tensors form `n_buckets` buckets: bucket b is tensors [bucket_ends[b-1], bucket_ends[b]);
 * a bucket of one tensor is a plain allreduce, a larger one a coalesced allreduce. All
 * buckets are started before the first is waited for. */
char *fd_allreduce(fd_group *group, void *const *tensors, size_t n, const size_t *bucket_ends,
                   size_t n_buckets, int average);
/* Broadcasts `tensor` in place from `root`. */
char *fd_broadcast(fd_group *group, void *tensor, int root);
/* Gathers `input` from every rank into outputs[0..world_size) (preallocated, same shape). */
char *fd_all_gather(fd_group *group, void *input, void *const *outputs, size_t world_size);
/* Blocks until every rank has reached it. */
char *fd_barrier(fd_group *group);

void fd_free_error(char *error);

#ifdef __cplusplus
}
#endif
