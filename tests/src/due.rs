//! The one write-when-due loop of the fake helpers: the fake mtr-packet's answers to its
//! stdout and mtrsim's packets to its TUN device each go out at their due time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::time::Instant;

use crossbeam_channel::Receiver;

/// Writes each `(due, bytes)` received when it is due: earliest first, in arrival order
/// among equals. Returns when the channel is closed and everything received is written, or
/// when `write` fails.
pub fn write_when_due(
    scheduled: &Receiver<(Instant, Vec<u8>)>,
    mut write: impl FnMut(&[u8]) -> io::Result<()>,
) {
    let mut queue: BinaryHeap<(Reverse<Instant>, Reverse<u64>, Vec<u8>)> = BinaryHeap::new();
    let mut order = 0u64;
    let mut open = true;
    loop {
        let now = Instant::now();
        while queue.peek().is_some_and(|(Reverse(due), _, _)| *due <= now) {
            if let Some((_, _, bytes)) = queue.pop()
                && write(&bytes).is_err()
            {
                return;
            }
        }
        let wait = queue
            .peek()
            .map(|(Reverse(due), _, _)| due.saturating_duration_since(now));
        let next = match (wait, open) {
            (Some(wait), true) => scheduled
                .recv_timeout(wait)
                .map_err(|e| e.is_disconnected()),
            (Some(wait), false) => {
                std::thread::sleep(wait);
                continue;
            }
            (None, true) => scheduled.recv().map_err(|_| true),
            (None, false) => return,
        };
        match next {
            Ok((due, bytes)) => {
                order += 1;
                queue.push((Reverse(due), Reverse(order), bytes));
            }
            Err(disconnected) => open &= !disconnected,
        }
    }
}
