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

/// What the heap holds, for `/memory` and `server.memory_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes handed out by the allocator and not yet freed.
    pub allocated: u64,
    /// Bytes the allocator has taken from the OS (free or not).
    pub heap_size: u64,
    /// Bytes of free memory the allocator holds (heap minus allocated).
    pub heap_free: u64,
    /// Resident set size of the process.
    pub resident: u64,
}

/// The allocator's figures (glibc `mallinfo2`) and the resident size (`/proc/self/statm`).
pub fn usage() -> Usage {
    let mut u = Usage {
        resident: resident_bytes(),
        ..Usage::default()
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[repr(C)]
        struct MallInfo2 {
            arena: usize,
            ordblks: usize,
            smblks: usize,
            hblks: usize,
            hblkhd: usize,
            usmblks: usize,
            fsmblks: usize,
            uordblks: usize,
            fordblks: usize,
            keepcost: usize,
        }
        unsafe extern "C" {
            fn mallinfo2() -> MallInfo2;
        }
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct by value; glibc
        // (2.33 and later) locks its arenas while it sums them.
        let m = unsafe { mallinfo2() };
        let _ = (
            m.ordblks, m.smblks, m.hblks, m.usmblks, m.fsmblks, m.keepcost,
        );
        u.allocated = (m.uordblks + m.hblkhd) as u64;
        u.heap_size = (m.arena + m.hblkhd) as u64;
        u.heap_free = m.fordblks as u64;
    }
    u
}

/// `VmRSS` of `/proc/self/status` (in kB there), in bytes; 0 where there is no procfs.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn usage_reads_the_allocator_and_procfs() {
        // Other tests allocate and free concurrently, so only the figures' presence and
        // consistency are checked, not a difference.
        let v = vec![1u8; 8 << 20];
        let u = super::usage();
        assert!(u.resident > 0);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(u.allocated >= v.len() as u64, "{u:?}");
            assert!(u.heap_size >= u.allocated, "{u:?}");
        }
        drop(v);
    }
}
