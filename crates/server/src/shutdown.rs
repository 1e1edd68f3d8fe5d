//! Stopping the server: SIGINT/SIGTERM (and the `shutdown` command, which
//! raises SIGINT as memcached does; `shutdown graceful` raises SIGUSR1).

use nix::sys::signal::{raise, Signal};

/// Asks the main thread to stop the server.
pub fn request(graceful: bool) {
    let sig = if graceful {
        Signal::SIGUSR1
    } else {
        Signal::SIGINT
    };
    if let Err(e) = raise(sig) {
        eprintln!("memcrab: could not raise {sig}: {e}");
    }
}
