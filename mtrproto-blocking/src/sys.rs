//! The system calls std does not offer: signal a process group, ask whether a child exited
//! without reaping it, count the bytes a pipe's reader has not read, and block SIGPIPE on
//! the calling thread. The crate's only unsafe code.
#![allow(unsafe_code)]

use std::io;

/// Sends SIGKILL to every process of group `pgid` (the helper and whatever it started).
pub(crate) fn kill_group(pgid: u32) -> io::Result<()> {
    let Ok(pgid) = i32::try_from(pgid) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    if pgid <= 1 {
        // -1 and -0 would mean "every process" and "our own group".
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether child `pid` has exited, leaving it to be reaped (its process id, and so its
/// group's id, stays reserved until then).
pub(crate) fn has_exited(pid: u32) -> io::Result<bool> {
    let id: libc::id_t = pid;
    // SAFETY: siginfo_t is plain data, valid when zeroed; waitid writes into it only.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is a valid, writable siginfo_t.
    if unsafe { libc::waitid(libc::P_PID, id, &mut info, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid filled `info`; si_pid is 0 when no child changed state.
    Ok(unsafe { info.si_pid() } != 0)
}

/// Blocks SIGPIPE on the calling thread: a write to a helper that exited then fails with
/// EPIPE instead of killing a host process that keeps SIGPIPE's default action. Children
/// spawned by std start with an empty signal mask, so helpers are not affected.
pub(crate) fn block_sigpipe() {
    // SAFETY: the sigset is initialised by sigemptyset before use; pthread_sigmask only
    // changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// How many bytes written to pipe `fd` its reader has not read yet (FIONREAD works on
/// either end of a Linux pipe).
pub(crate) fn pipe_unread(fd: std::os::fd::RawFd) -> io::Result<usize> {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid and writable.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(unread).unwrap_or(0))
}
