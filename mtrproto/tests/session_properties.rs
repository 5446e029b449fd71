//! Random operation sequences against the session, through the same harness as the `session`
//! fuzz target (`mtrproto::fuzzing::session`): every token completes exactly once, the window
//! holds, nothing completes for a token never issued, buffers stay within their bounds.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn session_invariants_hold(ops in prop::collection::vec(any::<u8>(), 0..600)) {
        mtrproto::fuzzing::session(&ops);
    }

    #[test]
    fn framer_chunking_and_line_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        mtrproto::fuzzing::framer(&bytes);
        mtrproto::fuzzing::reply_line(&bytes);
        mtrproto::fuzzing::request_line(&bytes);
    }
}
