//! The server's only `unsafe`: batched datagram I/O, `recvmmsg(2)` and
//! `sendmmsg(2)`, which no safe crate wraps soundly (nix's wrappers read
//! the address array as initialised whether or not the kernel wrote it),
//! and glibc's `malloc_trim(3)`, which none wraps.
//!
//! ```text
//!  MmsgHeaders (reused)       one mmsghdr + iovec + sockaddr per datagram
//!  recv_batch(fd, slots) ──►  [(len, peer, truncated)]   MSG_DONTWAIT
//!  send_batch(fd, dgrams) ──► how many left               MSG_DONTWAIT
//! ```

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use nix::libc;
use socket2::SockAddr;

/// One received datagram: its length, its sender, whether it was cut.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    pub peer: Option<SocketAddr>,
    pub truncated: bool,
}

/// The kernel-facing arrays for a batch, kept between calls so that a
/// batch allocates nothing.
pub struct MmsgHeaders {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    send_names: Vec<SockAddr>,
}

impl MmsgHeaders {
    pub fn new(n: usize) -> Self {
        // SAFETY: mmsghdr, iovec and sockaddr_storage are plain C structs
        // for which all-zero bytes are a valid value.
        let (hdr, iov, name) = unsafe {
            (
                std::mem::zeroed::<libc::mmsghdr>(),
                std::mem::zeroed::<libc::iovec>(),
                std::mem::zeroed::<libc::sockaddr_storage>(),
            )
        };
        MmsgHeaders {
            hdrs: vec![hdr; n],
            iovs: vec![iov; n],
            names: vec![name; n],
            send_names: Vec::with_capacity(n),
        }
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }
}

/// Points a header at one address buffer and one iovec (no control data).
fn point(
    hdr: &mut libc::mmsghdr,
    name: *mut libc::c_void,
    namelen: libc::socklen_t,
    iov: &mut libc::iovec,
) {
    let m = &mut hdr.msg_hdr;
    m.msg_name = name;
    m.msg_namelen = namelen;
    m.msg_iov = iov;
    m.msg_iovlen = 1;
    m.msg_control = std::ptr::null_mut();
    m.msg_controllen = 0;
    m.msg_flags = 0;
    hdr.msg_len = 0;
}

/// Reads at most `h.capacity()` datagrams, the i-th into `slots[i * slot..(i + 1) * slot]`, without
/// blocking. `Err(WouldBlock)` when none waits.
pub fn recv_batch(
    fd: RawFd,
    h: &mut MmsgHeaders,
    slots: &mut [u8],
    slot: usize,
    out: &mut Vec<Received>,
) -> io::Result<usize> {
    let n = h.capacity().min(slots.len() / slot);
    out.clear();
    if n == 0 {
        return Ok(0);
    }
    for i in 0..n {
        h.iovs[i] = libc::iovec {
            iov_base: slots[i * slot..].as_mut_ptr().cast(),
            iov_len: slot,
        };
        point(
            &mut h.hdrs[i],
            (&mut h.names[i] as *mut libc::sockaddr_storage).cast(),
            std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
            &mut h.iovs[i],
        );
    }
    // SAFETY: the first `n` headers point at `n` iovecs, each at its own
    // `slot` bytes of `slots`, and at `n` address buffers whose size is in
    // msg_namelen; all are borrowed for the call and the kernel writes no
    // further than those lengths.
    let got = unsafe {
        libc::recvmmsg(
            fd,
            h.hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    for i in 0..got as usize {
        let hdr = &h.hdrs[i];
        // SAFETY: the kernel filled the first msg_namelen bytes of the
        // storage (zeroed beforehand, so the rest is initialised too).
        let peer = unsafe { SockAddr::new(h.names[i], hdr.msg_hdr.msg_namelen) }.as_socket();
        out.push(Received {
            len: hdr.msg_len as usize,
            peer,
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        });
    }
    Ok(got as usize)
}

/// Sends the datagrams `dgrams` (bytes and destination) with one call,
/// without blocking; returns how many the kernel took (the rest wait).
/// `Err(WouldBlock)` when it took none.
pub fn send_batch(
    fd: RawFd,
    h: &mut MmsgHeaders,
    dgrams: &[(&[u8], SocketAddr)],
) -> io::Result<usize> {
    let n = dgrams.len().min(h.capacity());
    if n == 0 {
        return Ok(0);
    }
    h.send_names.clear();
    h.send_names
        .extend(dgrams[..n].iter().map(|(_, a)| SockAddr::from(*a)));
    for (i, (bytes, _)) in dgrams[..n].iter().enumerate() {
        h.iovs[i] = libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        };
        point(
            &mut h.hdrs[i],
            h.send_names[i].as_ptr().cast_mut().cast(),
            h.send_names[i].len(),
            &mut h.iovs[i],
        );
    }
    // SAFETY: the first `n` headers point at iovecs over the borrowed
    // `dgrams` bytes and at addresses in `send_names`, all alive for the
    // call; the kernel only reads them (and writes msg_len).
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            h.hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Fixes glibc's thresholds where it would otherwise raise them: after a
/// large buffer is freed glibc serves buffers of that size from its heaps
/// and keeps up to twice that free at each heap's top, which `malloc_trim`
/// does not give back for a thread's heap. With fixed thresholds, buffers
/// of `bytes` and more are mapped and unmapped whole, and a heap's top
/// past `bytes` goes back on free, all but `bytes`/4 (glibc's default
/// keeps 128 KB at the top of every thread's heap).
pub fn fix_malloc_thresholds(bytes: i32) {
    // SAFETY: mallopt takes two plain integers and only sets the
    // allocator's parameters under its lock; it is called once, before
    // the worker threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
        libc::mallopt(libc::M_TRIM_THRESHOLD, bytes);
        libc::mallopt(libc::M_TOP_PAD, bytes / 4);
    }
}

/// Gives the allocator's free pages back to the system (glibc keeps
/// freed memory inside its heaps; after a burst of connections that is
/// most of what they used).
pub fn trim_heap() {
    // SAFETY: malloc_trim takes a plain integer, touches only the
    // allocator's own state under its locks, and is safe to call from any
    // thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
