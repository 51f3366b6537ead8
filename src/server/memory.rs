//! Giving memory back to the operating system. Reading the bootstrap needs a protobuf
//! descriptor pool of several MiB for a moment; glibc keeps freed memory in its heap, so after
//! start-up tern asks it to return free pages. This is the one module that allows `unsafe`.
#![allow(unsafe_code)]

/// Return free heap pages to the OS (glibc `malloc_trim(0)`); a no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim takes no pointers and only walks glibc's own allocator state,
        // which it locks; it is safe to call at any time from any thread.
        unsafe {
            malloc_trim(0);
        }
    }
}
