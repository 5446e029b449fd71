//! Replays the committed fuzz corpus (`mtrproto-fuzz/corpus/TARGET/`) through the same checks
//! the fuzz targets run, so that `cargo test` catches what the fuzzer once found.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mtrproto-fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{target}: {} fails", path.display());
        inputs += 1;
    }
    assert!(inputs > 0, "{target}: empty corpus");
    println!("{target}: {inputs} inputs replayed");
}

#[test]
fn reply_line() {
    replay("reply_line", mtrproto::fuzzing::reply_line);
}

#[test]
fn request_line() {
    replay("request_line", mtrproto::fuzzing::request_line);
}

#[test]
fn framer() {
    replay("framer", mtrproto::fuzzing::framer);
}

#[test]
fn session() {
    replay("session", mtrproto::fuzzing::session);
}

#[test]
fn multipath() {
    replay("multipath", mtrproto::fuzzing::multipath);
}

#[test]
fn tracer() {
    replay("tracer", mtrproto::fuzzing::tracer);
}

#[test]
fn stats() {
    replay("stats", mtrproto::fuzzing::stats);
}

/// Needs the `arbitrary` feature: `cargo test -p mtrproto --features arbitrary`.
#[cfg(feature = "arbitrary")]
#[test]
fn values() {
    replay("values", mtrproto::fuzzing::values);
}
