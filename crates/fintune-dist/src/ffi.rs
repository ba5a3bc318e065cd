//! The C interface of the shim (`shim/fintune_dist.h`) and thin wrappers that turn its error
//! strings into `Result`s. This module holds all of the crate's `unsafe` code.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::NonNull;

use tch::Tensor;

/// The shim's opaque process group (`fd_group`: a c10d store and backend).
#[repr(C)]
pub(crate) struct FdGroup {
    _private: [u8; 0],
}

extern "C" {
    fn fd_group_new(
        backend: c_int,
        store_kind: c_int,
        target: *const c_char,
        port: u16,
        rank: c_int,
        world_size: c_int,
        timeout_ms: i64,
        gloo_host: *const c_char,
        out: *mut *mut FdGroup,
    ) -> *mut c_char;
    fn fd_group_free(group: *mut FdGroup);
    fn fd_allreduce(
        group: *mut FdGroup,
        tensors: *const *mut c_void,
        n: usize,
        bucket_ends: *const usize,
        n_buckets: usize,
        average: c_int,
    ) -> *mut c_char;
    fn fd_broadcast(group: *mut FdGroup, tensor: *mut c_void, root: c_int) -> *mut c_char;
    fn fd_all_gather(
        group: *mut FdGroup,
        input: *mut c_void,
        outputs: *const *mut c_void,
        world_size: usize,
    ) -> *mut c_char;
    fn fd_barrier(group: *mut FdGroup) -> *mut c_char;
    fn fd_free_error(error: *mut c_char);
}

/// `FD_BACKEND_*` of the shim.
pub(crate) const BACKEND_GLOO: c_int = 0;
pub(crate) const BACKEND_NCCL: c_int = 1;
/// `FD_STORE_*` of the shim.
pub(crate) const STORE_TCP: c_int = 0;
pub(crate) const STORE_TCP_CLIENT: c_int = 1;
pub(crate) const STORE_FILE: c_int = 2;

/// Turns the shim's return value into a `Result`, releasing the error string.
fn check(error: *mut c_char) -> Result<(), String> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return of the shim is a NUL-terminated string it allocated with
    // malloc; we copy it and hand it back to fd_free_error exactly once.
    let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
    // SAFETY: see above; `error` is not used afterwards.
    unsafe { fd_free_error(error) };
    Err(message)
}

fn c_string(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

/// An owned c10d process group; freed on drop.
#[derive(Debug)]
pub(crate) struct Group(NonNull<FdGroup>);

// SAFETY: the c10d store and backend behind the pointer have no thread affinity (c10d itself
// calls them from its worker threads); `Group` is not `Sync`, so one thread at a time issues
// collectives, which keeps their order identical across ranks.
unsafe impl Send for Group {}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the pointer came from fd_group_new and is freed once, here.
        unsafe { fd_group_free(self.0.as_ptr()) };
    }
}

/// Where the ranks meet, in the shim's terms.
pub(crate) struct StoreArgs<'a> {
    pub(crate) kind: c_int,
    pub(crate) target: &'a str,
    pub(crate) port: u16,
}

pub(crate) fn new_group(
    backend: c_int,
    store: &StoreArgs<'_>,
    rank: i32,
    world_size: i32,
    timeout_ms: i64,
    gloo_host: Option<&str>,
) -> Result<Group, String> {
    let target = c_string(store.target)?;
    let host = gloo_host.map(c_string).transpose()?;
    let mut out: *mut FdGroup = std::ptr::null_mut();
    // SAFETY: the strings outlive the call; `out` is a valid place for the result, which the
    // shim sets only on success.
    let error = unsafe {
        fd_group_new(
            backend,
            store.kind,
            target.as_ptr(),
            store.port,
            rank,
            world_size,
            timeout_ms,
            host.as_ref().map_or(std::ptr::null(), |h| h.as_ptr()),
            &mut out,
        )
    };
    check(error)?;
    NonNull::new(out).map(Group).ok_or_else(|| "the shim returned no process group".to_string())
}

/// Allreduces `tensors` in place, bucket `b` being `tensors[ends[b-1]..ends[b]]`.
pub(crate) fn allreduce(
    group: &Group,
    tensors: &mut [Tensor],
    bucket_ends: &[usize],
    average: bool,
) -> Result<(), String> {
    let ptrs: Vec<*mut c_void> = tensors.iter_mut().map(|t| t.as_mut_ptr().cast()).collect();
    // SAFETY: every pointer is a live `at::Tensor*` borrowed mutably for the call (tch's
    // C_tensor is `torch::Tensor*`); the shim waits for all work before returning, so c10d
    // holds no reference to the tensors afterwards; the slices outlive the call.
    let error = unsafe {
        fd_allreduce(
            group.0.as_ptr(),
            ptrs.as_ptr(),
            ptrs.len(),
            bucket_ends.as_ptr(),
            bucket_ends.len(),
            c_int::from(average),
        )
    };
    check(error)
}

pub(crate) fn broadcast(group: &Group, tensor: &mut Tensor, root: i32) -> Result<(), String> {
    // SAFETY: a live `at::Tensor*` borrowed mutably for the call; the shim waits for the work.
    let error = unsafe { fd_broadcast(group.0.as_ptr(), tensor.as_mut_ptr().cast(), root) };
    check(error)
}

pub(crate) fn all_gather(
    group: &Group,
    input: &Tensor,
    outputs: &mut [Tensor],
) -> Result<(), String> {
    let ptrs: Vec<*mut c_void> = outputs.iter_mut().map(|t| t.as_mut_ptr().cast()).collect();
    // SAFETY: `input` is a live `at::Tensor*` that c10d only reads (allgather's input), so the
    // const-to-mut cast is never written through; the outputs are borrowed mutably; the shim
    // waits for the work before returning.
    let error = unsafe {
        fd_all_gather(group.0.as_ptr(), input.as_ptr().cast_mut().cast(), ptrs.as_ptr(), ptrs.len())
    };
    check(error)
}

pub(crate) fn barrier(group: &Group) -> Result<(), String> {
    // SAFETY: the group pointer is live; the call blocks until the barrier completes.
    let error = unsafe { fd_barrier(group.0.as_ptr()) };
    check(error)
}
