//! Ports for child processes to bind.

use std::net::TcpListener;

/// A port that was free a moment ago on 127.0.0.1, for a child process to bind. It is taken
/// below Linux's ephemeral range (32768 and up), where the kernel never puts the local end of
/// an outgoing connection: a port from `bind :0` could be handed to some test's connection
/// before the child binds it. Each call in a process tries the next port, from a start that
/// differs between processes.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
